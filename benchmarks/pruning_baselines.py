"""Baseline criteria on the digits CNN: accuracy after pruning without fine-tuning.

Filter pruning at 30/50/70/90% (per layer; first conv and classifier protected) and
unstructured pruning of the first fully connected layer at 50/80/90/95%, for l1, taylor and
random, over 3 seeds; then CPU latency of each filter-pruned model beside its MACs reduction.

    python -m benchmarks.pruning_baselines
"""

from __future__ import annotations

import statistics

import torch

from benchmarks.common import digits_splits, markdown_table, mean_spread, train, write_results
from compression import Spec, compress

SEEDS = (0, 1, 2)
CRITERIA = ("l1", "taylor", "random")
FILTER_RATIOS = (0.3, 0.5, 0.7, 0.9)
SPARSITIES = (0.5, 0.8, 0.9, 0.95)
LATENCY_BATCH = 64


def _spec(step: dict, criterion: str, seed: int) -> Spec:
    return Spec.model_validate(
        {
            "steps": [step],
            "criterion": criterion,
            "seed": seed,
            "attribution": {"samples": 512},
            "evaluation": {"latency_batch": LATENCY_BATCH, "latency_repeats": 50},
        }
    )


def _speedup(ratios: list[float | None]) -> str:
    """The median speed-up of the runs whose before/after spreads did not overlap."""
    clear = [ratio for ratio in ratios if ratio is not None]
    noisy = len(ratios) - len(clear)
    text = f"{statistics.median(clear):.2f}x" if clear else "within noise"
    return text + (f" ({noisy} of {len(ratios)} runs within noise)" if clear and noisy else "")


def main() -> None:
    torch.set_num_threads(1)  # steadier latency on shared machines
    filters: dict[tuple[str, float], list[dict]] = {}
    weights: dict[tuple[str, float], list[float]] = {}
    baseline: list[float] = []
    for seed in SEEDS:
        train_set, test_set = digits_splits(seed)
        model = train("small_cnn", {}, train_set, seed)
        for criterion in CRITERIA:
            for ratio in FILTER_RATIOS:
                step = {"type": "prune_filters", "ratio": ratio}
                result = compress(
                    model, train_set, _spec(step, criterion, seed), eval_data=test_set
                )
                filters.setdefault((criterion, ratio), []).append(result.metrics)
            for sparsity in SPARSITIES:
                step = {"type": "prune_weights", "sparsity": sparsity, "layers": ["fc1"]}
                result = compress(
                    model, train_set, _spec(step, criterion, seed), eval_data=test_set
                )
                weights.setdefault((criterion, sparsity), []).append(
                    result.metrics["after"]["accuracy"]
                )
        baseline.append(result.metrics["before"]["accuracy"])
        print(f"seed {seed} done: unpruned accuracy {baseline[-1]:.3f}", flush=True)

    def accuracy_rows(table: dict, levels: tuple[float, ...], pick) -> list[list[str]]:
        return [
            [criterion]
            + [mean_spread([pick(m) for m in table[(criterion, level)]]) for level in levels]
            for criterion in CRITERIA
        ]

    filter_table = markdown_table(
        ["criterion"] + [f"{int(r * 100)}% filters" for r in FILTER_RATIOS],
        accuracy_rows(filters, FILTER_RATIOS, lambda m: m["after"]["accuracy"]),
    )
    weight_table = markdown_table(
        ["criterion"] + [f"{int(s * 100)}% of fc1" for s in SPARSITIES],
        accuracy_rows(weights, SPARSITIES, lambda a: a),
    )
    latency_rows = []
    for ratio in FILTER_RATIOS:
        runs = filters[("l1", ratio)]
        latency_rows.append(
            [
                f"{int(ratio * 100)}%",
                f"{statistics.median(m['reduction']['macs'] for m in runs):.2f}x",
                f"{statistics.median(m['reduction']['parameters'] for m in runs):.2f}x",
                f"{statistics.median(m['before']['latency_ms'] for m in runs):.3f}",
                f"{statistics.median(m['after']['latency_ms'] for m in runs):.3f}",
                _speedup([m["reduction"]["latency"] for m in runs]),
            ]
        )
    latency_table = markdown_table(
        ["filters pruned", "MACs reduction", "params reduction", "latency before (ms)",
         "latency after (ms)", "speed-up"],
        latency_rows,
    )  # fmt: skip
    sections = {
        f"Filter pruning, top-1 % (mean ± std over {len(SEEDS)} seeds, no fine-tuning; "
        f"unpruned {mean_spread(baseline)})": filter_table,
        "Unstructured pruning of fc1, top-1 %": weight_table,
        f"CPU latency, batch {LATENCY_BATCH}, 1 thread, median of 50 runs (l1-pruned models)": (
            latency_table
        ),
    }
    raw = {
        "baseline_accuracy": baseline,
        "filters": {f"{c}@{r}": [m["after"] for m in ms] for (c, r), ms in filters.items()},
        "weights": {f"{c}@{s}": accs for (c, s), accs in weights.items()},
    }
    path = write_results("pruning_baselines", "Pruning baselines on sklearn digits", sections, raw)
    for heading, table in sections.items():
        print(f"\n{heading}\n{table}")
    print(f"\nwritten to {path}")


if __name__ == "__main__":
    main()
