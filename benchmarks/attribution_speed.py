"""Cost of all-layer DeepLIFT relevance: one pass vs a plain forward+backward vs captum.

Two plain passes bracket the cost: "input grad" is a forward and a backward of the explained
logits to the input only (the floor: no weight gradients, nothing recorded); "training step"
is a forward and a cross-entropy backward that also computes every weight gradient. Our
engine adds a forward of the shared reference sample and the rule bookkeeping. captum
computes one layer per LayerDeepLift call, each on the input and the reference batch. Same
512 samples for all; the runs are interleaved and each timing is a median.

    python -m benchmarks.attribution_speed
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable

import torch
from captum.attr import LayerDeepLift

from benchmarks.common import markdown_table, write_results
from compression import zoo
from compression.attribution.captum_patch import patched_deeplift, separate_chained_nonlinearities
from compression.attribution.engine import attribute
from compression.attribution.normalize import normalize
from compression.data import Dataset
from compression.layers import weighted_layers

SAMPLES = 512
REPEATS = 7


def _interleaved_medians(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median seconds per run; one round runs each once, so drift hits all alike."""
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values():
        run()  # warm-up
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in timings.items()}


def measure(name: str, args: dict) -> list[str]:
    torch.manual_seed(0)
    model, shape = zoo.build(name, args)
    model.eval()
    x = torch.rand(SAMPLES, *shape)
    y = torch.randint(0, 10, (SAMPLES,))
    data = Dataset(x, y, tuple(str(i) for i in range(10)))
    layers = weighted_layers(model, x[:2])

    def input_grad() -> None:
        leaf = x.clone().requires_grad_(True)
        torch.autograd.grad(model(leaf).gather(1, y[:, None]).sum(), leaf)

    def training_step() -> None:
        model.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()

    def ours() -> None:
        attribute(model, layers, data, batch_size=SAMPLES, channel_scores=("relevance",))

    def ours_with_weights() -> None:
        attribute(
            model, layers, data, batch_size=SAMPLES, channel_scores=("relevance",), per_weight=True
        )

    gm = separate_chained_nonlinearities(normalize(model))

    def captum_per_layer() -> None:
        with warnings.catch_warnings(), patched_deeplift():
            warnings.simplefilter("ignore")
            for layer_name in layers:
                LayerDeepLift(gm, gm.get_submodule(layer_name)).attribute(
                    x, baselines=torch.zeros_like(x), target=y
                )

    fast = _interleaved_medians(
        {"input": input_grad, "train": training_step, "ours": ours, "weights": ours_with_weights},
        REPEATS,
    )
    captum = _interleaved_medians({"captum": captum_per_layer}, 3)["captum"]
    floor, step = fast["input"], fast["train"]

    def cell(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ({seconds / floor:.2f}x / {seconds / step:.2f}x)"

    return [
        name,
        str(len(layers)),
        f"{floor * 1000:.0f}",
        f"{step * 1000:.0f}",
        cell(fast["ours"]),
        cell(fast["weights"]),
        cell(captum),
    ]


def main() -> None:
    torch.set_num_threads(2)
    rows = [measure("small_cnn", {}), measure("resnet20", {})]
    table = markdown_table(
        ["model", "layers", "input grad (ms)", "training step (ms)",
         "one pass, all layers (ms, x input grad / x step)", "one pass + per-weight",
         "captum, one call per layer"],
        rows,
    )  # fmt: skip
    heading = f"{SAMPLES} samples, median of {REPEATS} runs (captum: 3), 2 threads, CPU"
    path = write_results("attribution_speed", "All-layer DeepLIFT cost", {heading: table}, rows)
    print(f"{heading}\n{table}\nwritten to {path}")


if __name__ == "__main__":
    main()
