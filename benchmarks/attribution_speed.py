"""Cost of all-layer DeepLIFT relevance: one pass vs a plain forward+backward vs captum,
and how that cost grows with the number of samples and the size of the model.

Two plain passes bracket the cost: "input grad" is a forward and a backward of the explained
logits to the input only (the floor: no weight gradients, nothing recorded); "training step"
is a forward and a cross-entropy backward that also computes every weight gradient. Our
engine adds a forward of the shared reference sample and the rule bookkeeping. captum
computes one layer per LayerDeepLift call, each on the input and the reference batch. The
runs of one table row are interleaved and each timing is a median.

    python -m benchmarks.attribution_speed            # writes results/attribution_speed.md
    python -m benchmarks.attribution_speed --quick    # fewer repeats, smaller growth grid

``benchmarks.report`` embeds the same tables in BENCHMARKS.md (``sections``).
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import torch
from captum.attr import LayerDeepLift
from torch import nn

from benchmarks.common import markdown_table, sections_main
from compression import zoo
from compression.attribution.captum_patch import patched_deeplift, separate_chained_nonlinearities
from compression.attribution.engine import attribute
from compression.attribution.normalize import normalize
from compression.data import Dataset
from compression.layers import weighted_layers

SAMPLES = 256
MODELS = (("small_cnn", {}), ("resnet20", {}))
"""The comparison with captum: a 4-layer CNN and a 22-layer residual net."""
GROWTH_MODELS = (
    ("small_cnn", {}),
    ("lenet5", {}),
    ("vgg", {"width_multiplier": 0.125}),
    ("resnet20", {}),
    ("vgg", {"width_multiplier": 0.25}),
)
"""Growing parameter counts (about 10K to 2.3M) at 32x32 or smaller inputs."""


def _interleaved_medians(
    runs: dict[str, Callable[[], object]], repeats: int, warmup: bool = True
) -> dict[str, float]:
    """Median seconds per run; one round runs each once, so drift hits all alike."""
    timings: dict[str, list[float]] = {name: [] for name in runs}
    for run in runs.values() if warmup else ():
        run()
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            timings[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in timings.items()}


@dataclass
class Subject:
    """A model in eval mode with random inputs and labels, and its weighted layers."""

    label: str
    model: nn.Module
    x: torch.Tensor
    y: torch.Tensor
    layers: dict[str, nn.Module]

    @classmethod
    def build(cls, name: str, args: dict, samples: int) -> Subject:
        torch.manual_seed(0)
        model, shape = zoo.build(name, args)
        model.eval()
        x = torch.rand(samples, *shape)
        y = torch.randint(0, 10, (samples,))
        label = name + (f" x{args['width_multiplier']:g}" if "width_multiplier" in args else "")
        return cls(label, model, x, y, weighted_layers(model, x[:2]))

    @property
    def parameters(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def input_grad(self) -> None:
        leaf = self.x.clone().requires_grad_(True)
        torch.autograd.grad(self.model(leaf).gather(1, self.y[:, None]).sum(), leaf)

    def training_step(self) -> None:
        self.model.zero_grad()
        torch.nn.functional.cross_entropy(self.model(self.x), self.y).backward()

    def ours(self, per_weight: bool = False) -> None:
        data = Dataset(self.x, self.y, tuple(str(i) for i in range(10)))
        attribute(
            self.model, self.layers, data, batch_size=len(self.x),
            channel_scores=("relevance",), per_weight=per_weight,
        )  # fmt: skip

    @cached_property
    def captum_graph(self) -> nn.Module:
        """The model as captum's per-layer DeepLift needs it, prepared once, outside timing."""
        return separate_chained_nonlinearities(normalize(self.model))

    def captum_per_layer(self) -> None:
        gm = self.captum_graph
        with warnings.catch_warnings(), patched_deeplift():
            warnings.simplefilter("ignore")
            for layer_name in self.layers:
                LayerDeepLift(gm, gm.get_submodule(layer_name)).attribute(
                    self.x, baselines=torch.zeros_like(self.x), target=self.y
                )


def versus_captum(name: str, args: dict, repeats: int, captum_repeats: int) -> list[str]:
    """One row: the two plain passes, our one pass (with and without per-weight scores) and
    captum's one call per layer, each also as a multiple of the floor and of a step."""
    s = Subject.build(name, args, SAMPLES)
    fast = _interleaved_medians(
        {"input": s.input_grad, "train": s.training_step, "ours": s.ours,
         "weights": lambda: s.ours(per_weight=True)},
        repeats,
    )  # fmt: skip
    # captum's calls take seconds each and have nothing to warm beyond what ours warmed
    s.captum_graph  # noqa: B018 - prepared here, not inside the first timed run
    captum = _interleaved_medians({"captum": s.captum_per_layer}, captum_repeats, False)["captum"]
    floor, step = fast["input"], fast["train"]

    def cell(seconds: float) -> str:
        return f"{seconds * 1000:.0f} ({seconds / floor:.2f}x / {seconds / step:.2f}x)"

    return [
        s.label, str(len(s.layers)), f"{floor * 1000:.0f}", f"{step * 1000:.0f}",
        cell(fast["ours"]), cell(fast["weights"]), cell(captum),
    ]  # fmt: skip


def growth(name: str, args: dict, samples: int, repeats: int) -> list[str]:
    """One row of the growth table: our pass against a training step on the same batch."""
    s = Subject.build(name, args, samples)
    medians = _interleaved_medians({"train": s.training_step, "ours": s.ours}, repeats)
    return [
        s.label, f"{s.parameters:,}", str(samples), f"{medians['train'] * 1000:.0f}",
        f"{medians['ours'] * 1000:.0f}", f"{medians['ours'] / medians['train']:.2f}x",
    ]  # fmt: skip


def sections(quick: bool = False) -> dict[str, str]:
    """The two tables, measured now: heading -> markdown."""
    repeats, captum_repeats = (3, 1) if quick else (5, 3)  # captum: a minute a run on ResNet-20
    captum_rows = [versus_captum(name, args, repeats, captum_repeats) for name, args in MODELS]
    sample_counts = (128, 512) if quick else (128, 512, 1024)
    models = GROWTH_MODELS[:3] if quick else GROWTH_MODELS
    growth_rows = [
        growth(name, args, samples, repeats)
        for name, args in models
        for samples in sample_counts
    ]  # fmt: skip
    threads = torch.get_num_threads()
    versus = (
        f"One pass vs plain passes vs captum ({SAMPLES} samples, median of {repeats} runs, "
        f"captum {captum_repeats}; {threads} thread(s), CPU)"
    )
    growing = f"Growth with samples and model size (median of {repeats} runs, {threads} thread(s))"
    captum_header = ["model", "layers", "input grad (ms)", "training step (ms)",
                     "one pass, all layers (ms, x input grad / x step)", "one pass + per-weight",
                     "captum, one call per layer"]  # fmt: skip
    growth_header = ["model", "parameters", "samples", "training step (ms)",
                     "one pass, all layers (ms)", "one pass / step"]  # fmt: skip
    return {
        versus: markdown_table(captum_header, captum_rows),
        growing: markdown_table(growth_header, growth_rows),
    }


def main() -> None:
    sections_main("attribution_speed", "All-layer DeepLIFT cost", __doc__, sections, threads=2)


if __name__ == "__main__":
    main()
