"""Weight sharing and mixed precision: DeepLIFT vs magnitude vs uniform, and a full pipeline.

On digits (small 2-D CNN) and mnist1d (1-D CNN), 3 seeds:
- weight sharing with k = 2..64 clusters in every layer, k-means weighted by DeepLIFT
  relevance, by |w|, or not at all; without and with 2 epochs of centroid fine-tuning;
- mixed precision at an average of 2..8 bits, the knapsack allocator driven by DeepLIFT
  relevance, by |w| or unweighted error, against every layer at the same fixed width;
- a prune -> share -> quantize -> fine-tune pipeline on the digits CNN: packed bytes (the
  real .xaic file) vs fp32 bytes, and accuracy.

    python -m benchmarks.sharing_and_precision
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path
from typing import Any

import torch

from benchmarks.common import (
    digits_splits,
    markdown_table,
    mean_spread,
    mnist1d_splits,
    train,
    write_results,
)
from compression import Spec, compress
from compression.packed import save_packed

SEEDS = (0, 1, 2)
CLUSTERS = (2, 4, 8, 16, 32, 64)
BITS = (2, 2.5, 3, 3.5, 4, 5, 6, 8)
FIXED_BITS = (2, 3, 4, 5, 6, 8)
WEIGHTINGS = {"deeplift": "relevance", "l1": "magnitude", "uniform": "uniform"}
FINETUNE = {"epochs": 2, "lr": 1e-3}
FAST = {"attribution": {"samples": 512}, "evaluation": {"latency_repeats": 3}}


def _sweep(model: Any, train_set: Any, test_set: Any, steps: list, parameter: str, values, seed):
    spec = Spec.model_validate(
        {**FAST, "steps": steps, "seed": seed,
         "sweep": {"step": 0, "parameter": parameter, "values": list(values)}}
    )  # fmt: skip
    result = compress(model, train_set, spec, eval_data=test_set)
    return [point["accuracy"] for point in result.metrics["sweep"]["points"]]


def run(name: str, splits, architecture: str) -> tuple[dict[str, str], dict[str, Any]]:
    sharing: dict[tuple[str, bool, int], list[float]] = {}
    precision: dict[tuple[str, bool, int], list[float]] = {}
    baseline = []
    for seed in SEEDS:
        train_set, test_set = splits(seed)
        model = train(architecture, {}, train_set, seed)
        for tuned in (False, True):
            tail = [{"type": "finetune", **FINETUNE}] if tuned else []
            for label, weighting in WEIGHTINGS.items():
                steps = [{"type": "share_weights", "weighting": weighting}, *tail]
                for k, accuracy in zip(
                    CLUSTERS, _sweep(model, train_set, test_set, steps, "clusters", CLUSTERS, seed),
                    strict=True,
                ):  # fmt: skip
                    sharing.setdefault((label, tuned, k), []).append(accuracy)
                steps = [{"type": "quantize_mixed", "allocation": weighting}, *tail]
                for bits, accuracy in zip(
                    BITS, _sweep(model, train_set, test_set, steps, "average_bits", BITS, seed),
                    strict=True,
                ):  # fmt: skip
                    precision.setdefault((label, tuned, bits), []).append(accuracy)
            for bits in FIXED_BITS:
                steps = [{"type": "quantize_mixed", "candidate_bits": [bits], "average_bits": bits}]
                spec = Spec.model_validate({**FAST, "steps": [*steps, *tail], "seed": seed})
                result = compress(model, train_set, spec, eval_data=test_set)
                precision.setdefault(("fixed width", tuned, bits), []).append(
                    result.metrics["after"]["accuracy"]
                )
                baseline.append(result.metrics["before"]["accuracy"])
        print(f"{name}: seed {seed} done", flush=True)

    def table(results: dict, levels: tuple[int, ...], unit: str) -> str:
        labels = list(dict.fromkeys(label for label, _, _ in results))
        rows = [
            [f"{label}{', fine-tuned' if tuned else ''}"]
            + [
                mean_spread(results[(label, tuned, level)])
                if (label, tuned, level) in results
                else "-"
                for level in levels
            ]
            for tuned in (False, True)
            for label in labels
        ]
        return markdown_table(["weighting"] + [f"{v} {unit}" for v in levels], rows)

    prefix = f"{name} ({architecture}, uncompressed {mean_spread(baseline)}, {len(SEEDS)} seeds)"
    sections = {
        f"{prefix}: weight sharing, top-1 % by clusters per layer": table(sharing, CLUSTERS, "k"),
        f"{prefix}: mixed precision, top-1 % by average bits": table(precision, BITS, "bits"),
    }
    raw = {
        "sharing": {f"{label}|{t}|{k}": v for (label, t, k), v in sharing.items()},
        "precision": {f"{label}|{t}|{b}": v for (label, t, b), v in precision.items()},
    }
    return sections, raw


PIPELINES = {
    "prune 50% filters, 90% fc1, share k=16, fine-tune": [
        {"type": "prune_filters", "ratio": 0.5},
        {"type": "prune_weights", "sparsity": 0.9, "layers": ["fc1"]},
        {"type": "share_weights", "clusters": 16},
        {"type": "finetune", "epochs": 5},
    ],
    "prune 50% filters, 90% fc1, share fc k=8, conv 4-bit average, fine-tune": [
        {"type": "prune_filters", "ratio": 0.5},
        {"type": "prune_weights", "sparsity": 0.9, "layers": ["fc1"]},
        {"type": "share_weights", "clusters": 8, "layers": ["fc1", "fc2"]},
        {"type": "quantize_mixed", "average_bits": 4, "layers": ["conv1", "conv2"]},
        {"type": "finetune", "epochs": 5},
    ],
    "prune 30% filters, 80% fc1, share k=32, fine-tune": [
        {"type": "prune_filters", "ratio": 0.3},
        {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc1"]},
        {"type": "share_weights", "clusters": 32},
        {"type": "finetune", "epochs": 5},
    ],
}


def pipelines() -> tuple[dict[str, str], dict[str, Any]]:
    rows, raw = [], {}
    for label, steps in PIPELINES.items():
        numbers = []
        for seed in SEEDS:
            train_set, test_set = digits_splits(seed)
            model = train("small_cnn", {}, train_set, seed)
            spec = Spec.model_validate({**FAST, "steps": steps, "seed": seed})
            result = compress(model, train_set, spec, eval_data=test_set)
            with tempfile.TemporaryDirectory() as directory:
                report = save_packed(
                    result.model.module, result.model.example_input(),
                    Path(directory) / "model.xaic", result.encodings, result.masks,
                )  # fmt: skip
            # the graph and the tensors that are not packed (biases...): what version 1 kept
            # in its architecture archive
            architecture = report.section_bytes["architecture"]
            architecture += report.section_bytes.get("tensors", 0)
            weights = report.total_bytes - architecture
            numbers.append(
                {
                    "before": result.metrics["before"]["accuracy"],
                    "after": result.metrics["after"]["accuracy"],
                    "fp32": result.metrics["before"]["fp32_bytes"],
                    "packed": report.total_bytes,
                    "architecture": architecture,
                    "payload": weights,
                }
            )
        raw[label] = numbers

        def median(key: str, numbers: list[dict[str, float]] = numbers) -> float:
            return statistics.median(n[key] for n in numbers)

        rows.append(
            [
                label,
                mean_spread([n["before"] for n in numbers]),
                mean_spread([n["after"] for n in numbers]),
                f"{median('fp32'):.0f}",
                f"{median('packed'):.0f} ({median('fp32') / median('packed'):.1f}x)",
                f"{median('architecture'):.0f}",
                f"{median('payload'):.0f} ({median('fp32') / median('payload'):.1f}x)",
            ]
        )
    table = markdown_table(
        ["pipeline", "top-1 before", "top-1 after", "fp32 bytes", "packed file bytes",
         "of which architecture", "of which weights + header"],
        rows,
    )  # fmt: skip
    return {f"digits CNN pipelines ({len(SEEDS)} seeds; medians of bytes)": table}, raw


def main() -> None:
    torch.set_num_threads(2)
    sections: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for name, splits, architecture in (
        ("digits", digits_splits, "small_cnn"),
        ("mnist1d", mnist1d_splits, "cnn1d"),
    ):
        part, numbers = run(name, splits, architecture)
        sections.update(part)
        raw[name] = numbers
    part, raw["pipelines"] = pipelines()
    sections.update(part)
    path = write_results(
        "sharing_and_precision", "Weight sharing, mixed precision, pipelines", sections, raw
    )
    for heading, body in sections.items():
        print(f"\n{heading}\n{body}")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
