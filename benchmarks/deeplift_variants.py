"""Does DeepLIFT earn its place? Relevance variants against the baseline criteria.

On digits (small 2-D CNN) and mnist1d (1-D CNN): filter pruning at 30/50/70/90% and
unstructured pruning of the first fully connected layer at 50/80/90/95%, no fine-tuning,
5 seeds. Compares DeepLIFT variants (target, baseline, channel score, magnitude hybrid,
iterative re-attribution), ``auto``, and l1 / taylor / random. Also filter pruning with a
global ranking (per-layer normalised scores).

    python -m benchmarks.deeplift_variants [--seeds 5]
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
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
from compression.data import Dataset
from compression.io import LoadedModel

FILTER_RATIOS = (0.3, 0.5, 0.7, 0.9)
SPARSITIES = (0.5, 0.8, 0.9, 0.95)

# name -> (criterion, attribution settings, extra step fields)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "deeplift (default)": ("deeplift", {}, {}),
    "deeplift, target margin": ("deeplift", {"deeplift_target": "margin"}, {}),
    "deeplift, target log_softmax": ("deeplift", {"deeplift_target": "log_softmax"}, {}),
    "deeplift, baseline mean": ("deeplift", {"baseline": "mean"}, {}),
    "deeplift, baseline blur": ("deeplift", {"baseline": "blur"}, {}),
    "deeplift, channel net |sum R|": ("deeplift", {"channel_score": "net"}, {}),
    "deeplift, channel ablation |a m|": ("deeplift", {"channel_score": "ablation"}, {}),
    "deeplift, relevance x magnitude": (
        "deeplift",
        {"channel_score": "relevance_x_magnitude", "weight_score": "relevance_x_magnitude"},
        {},
    ),
    "deeplift, plain weight relevance": ("deeplift", {"weight_score": "relevance"}, {}),
    "deeplift, iterative (3 steps)": ("deeplift", {}, {"iterative_steps": 3}),
    "auto": ("auto", {}, {}),
    "l1": ("l1", {}, {}),
    "taylor": ("taylor", {}, {}),
    "taylor, iterative (3 steps)": ("taylor", {}, {"iterative_steps": 3}),
    "random": ("random", {}, {}),
}
GLOBAL_CRITERIA = ("deeplift", "taylor", "l1")
FILTER_ONLY = ("iterative",)
WEIGHT_ONLY = ("plain weight relevance",)


def _accuracy(
    model: LoadedModel, train_set: Dataset, test_set: Dataset, seed: int,
    criterion: str, attribution: dict[str, Any], step: dict[str, Any],
) -> tuple[float, dict[str, Any]]:  # fmt: skip
    spec = Spec.model_validate(
        {
            "steps": [step],
            "criterion": criterion,
            "seed": seed,
            "attribution": {"samples": 512, **attribution},
            "evaluation": {"latency_repeats": 3},
        }
    )
    metrics = compress(model, train_set, spec, eval_data=test_set).metrics
    return metrics["after"]["accuracy"], metrics


def run(
    name: str, splits: Callable[[int], tuple[Dataset, Dataset]], architecture: str, seeds: int
) -> tuple[dict[str, str], dict[str, Any]]:
    filters: dict[tuple[str, float], list[float]] = {}
    weights: dict[tuple[str, float], list[float]] = {}
    global_filters: dict[tuple[str, float], list[float]] = {}
    completeness: list[float] = []
    auto_wins: dict[str, int] = {}
    unpruned: list[float] = []
    for seed in range(seeds):
        train_set, test_set = splits(seed)
        model = train(architecture, {}, train_set, seed)
        for variant, (criterion, attribution, extra) in VARIANTS.items():
            for ratio in FILTER_RATIOS if not variant.endswith(WEIGHT_ONLY) else ():
                step = {"type": "prune_filters", "ratio": ratio, **extra}
                accuracy, metrics = _accuracy(
                    model, train_set, test_set, seed, criterion, attribution, step
                )
                filters.setdefault((variant, ratio), []).append(accuracy)
                if variant == "deeplift (default)":
                    completeness.append(metrics["attribution"]["completeness_error"])
                if criterion == "auto":
                    winner = metrics["steps"][0]["auto"]["winner"]
                    auto_wins[winner] = auto_wins.get(winner, 0) + 1
            if any(word in variant for word in FILTER_ONLY):
                continue
            for sparsity in SPARSITIES:
                step = {"type": "prune_weights", "sparsity": sparsity, "layers": ["fc1"]}
                accuracy, _ = _accuracy(
                    model, train_set, test_set, seed, criterion, attribution, step
                )
                weights.setdefault((variant, sparsity), []).append(accuracy)
        for criterion in GLOBAL_CRITERIA:
            for ratio in FILTER_RATIOS:
                step = {"type": "prune_filters", "ratio": ratio, "scope": "global"}
                accuracy, metrics = _accuracy(model, train_set, test_set, seed, criterion, {}, step)
                global_filters.setdefault((criterion, ratio), []).append(accuracy)
        unpruned.append(metrics["before"]["accuracy"])
        print(f"{name}: seed {seed} done", flush=True)

    def table(results: dict, levels: tuple[float, ...], label: str, names) -> str:
        rows = [
            [variant] + [mean_spread(results[(variant, level)]) for level in levels]
            for variant in names
            if (variant, levels[0]) in results
        ]
        return markdown_table(["criterion"] + [f"{int(v * 100)}% {label}" for v in levels], rows)

    prefix = f"{name} ({architecture}, unpruned {mean_spread(unpruned)}, {seeds} seeds)"
    sections = {
        f"{prefix}: filter pruning, top-1 %": table(filters, FILTER_RATIOS, "filters", VARIANTS),
        f"{prefix}: fc1 sparsity, top-1 %": table(weights, SPARSITIES, "of fc1", VARIANTS),
        f"{prefix}: filter pruning with a global ranking, top-1 %": table(
            global_filters, FILTER_RATIOS, "filters", GLOBAL_CRITERIA
        ),
        f"{prefix}: notes": (
            f"DeepLIFT completeness error (relative, max over runs): {max(completeness):.2e}. "
            f"auto picked: {auto_wins}."
        ),
    }
    raw = {
        "filters": {f"{v}@{r}": a for (v, r), a in filters.items()},
        "weights": {f"{v}@{s}": a for (v, s), a in weights.items()},
        "global_filters": {f"{c}@{r}": a for (c, r), a in global_filters.items()},
        "completeness": completeness,
        "auto_wins": auto_wins,
        "unpruned": unpruned,
    }
    return sections, raw


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    seeds = parser.parse_args().seeds
    torch.set_num_threads(2)
    sections: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for name, splits, architecture in (
        ("digits", digits_splits, "small_cnn"),
        ("mnist1d", mnist1d_splits, "cnn1d"),
    ):
        part, numbers = run(name, splits, architecture, seeds)
        sections.update(part)
        raw[name] = numbers
    path = write_results("deeplift_variants", "DeepLIFT variants vs baselines", sections, raw)
    for heading, body in sections.items():
        print(f"\n{heading}\n{body}")
    print(f"\nwritten to {path}")
    _ = statistics


if __name__ == "__main__":
    main()
