"""Why does DeepLIFT filter pruning collapse on some seeds, and which change fixes it?

Candidates (issue 14), each a spec setting, against l1 and taylor, filter pruning without
fine-tuning at 50/70/90 %, per seed so collapses stay visible:

- explaining the true class plus its strongest competitors (``explained_classes`` 3),
- the margin target (true logit minus the mean of the others),
- relevance x magnitude as the channel score,
- the mean input as reference instead of zeros,
- one global ranking of per-layer normalised scores (``scope: global``).

Then, on the seed where the default loses most to l1 at 70 %, each layer pruned alone (the
others kept) by deeplift and by l1 says which layer the collapse comes from, and the rank
correlation of relevance with filter magnitude there says how differently they rank.

Recipe choices are made on the tuning pairs (the default); ``--half confirmation`` reports
the same table on the confirmation pairs, after the choice.

    python -m benchmarks.deeplift_collapse [--half tuning|confirmation] [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch

from benchmarks.common import markdown_table, write_results
from benchmarks.registry import Pair, pairs
from compression import Spec, compress

RATIOS = (0.5, 0.7, 0.9)
VARIANTS: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "deeplift (default)": ("deeplift", {}, {}),
    "deeplift, top-3 classes": ("deeplift", {"explained_classes": 3}, {}),
    "deeplift, margin": ("deeplift", {"deeplift_target": "margin"}, {}),
    "deeplift, relevance x magnitude": (
        "deeplift", {"channel_score": "relevance_x_magnitude"}, {},
    ),
    "deeplift, mean reference": ("deeplift", {"baseline": "mean"}, {}),
    "deeplift, global normalised": ("deeplift", {}, {"scope": "global"}),
    "l1": ("l1", {}, {}),
    "taylor": ("taylor", {}, {}),
}  # fmt: skip


def _run(pair_model, step: dict, criterion: str, attribution: dict, seed: int, values=None):
    model, train_set, test_set = pair_model
    spec: dict[str, Any] = {
        "steps": [step],
        "criterion": criterion,
        "seed": seed,
        "attribution": {"samples": 256, **attribution},
        "evaluation": {"latency_repeats": 3},
    }
    if values is not None:
        spec["sweep"] = {"step": 0, "parameter": "ratio", "values": list(values)}
    return compress(model, train_set, Spec.model_validate(spec), eval_data=test_set)


def _spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    ranks = [torch.argsort(torch.argsort(v)).double() for v in (a, b)]
    return float(torch.corrcoef(torch.stack(ranks))[0, 1])


def sweep(pair: Pair, seeds: int) -> tuple[dict[tuple[str, float], list[float]], list[float]]:
    accuracy: dict[tuple[str, float], list[float]] = {}
    unpruned = []
    for seed in range(seeds):
        loaded = pair.load(seed)
        for variant, (criterion, attribution, extra) in VARIANTS.items():
            step = {"type": "prune_filters", **extra}
            result = _run(loaded, step, criterion, attribution, seed, RATIOS)
            for point in result.metrics["sweep"]["points"]:
                accuracy.setdefault((variant, point["ratio"]), []).append(point["accuracy"])
        unpruned.append(result.metrics["before"]["accuracy"])
        print(f"{pair.name}: seed {seed} swept", flush=True)
    return accuracy, unpruned


def diagnose(pair: Pair, seed: int, ratio: float = 0.7) -> list[list[str]]:
    """Each prunable layer pruned alone by deeplift and l1; where the criteria disagree."""
    loaded = pair.load(seed)
    step = {"type": "prune_filters", "ratio": ratio}
    deeplift = _run(loaded, step, "deeplift", {}, seed)
    l1 = _run(loaded, step, "l1", {}, seed)
    relevance, magnitude = deeplift.scores[0], l1.scores[0]
    pruned = [
        row["name"]
        for row in deeplift.metrics["layers"]
        if row["channels_kept"] < row["channels_before"]
    ]
    everything = list(relevance)
    rows = []
    for name in pruned or everything:
        alone = {"type": "prune_filters", "ratio": ratio,
                 "protected": [other for other in everything if other != name]}  # fmt: skip
        drop = {
            criterion: _run(loaded, alone, criterion, {}, seed).metrics["after"]["accuracy"]
            for criterion in ("deeplift", "l1")
        }
        r, m = relevance[name].channels, magnitude[name].channels
        kept = max(1, round(len(r) * (1 - ratio)))
        top_r, top_m = (
            set(torch.topk(r, kept).indices.tolist()),
            set(torch.topk(m, kept).indices.tolist()),
        )
        rows.append(
            [name, str(len(r)), f"{drop['deeplift'] * 100:.1f}", f"{drop['l1'] * 100:.1f}",
             f"{_spearman(r, m):+.2f}", f"{len(top_r & top_m)}/{kept}",
             f"{float(r.max() / r.mean().clamp_min(1e-12)):.1f}"]
        )  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--half", choices=("tuning", "confirmation"), default="tuning")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--no-diagnosis", action="store_true")
    parser.add_argument("--pairs", nargs="*", help="only these pairs of the half")
    parser.add_argument("--suffix", default="", help="appended to the result file names")
    args = parser.parse_args()
    torch.set_num_threads(1)  # on a shared CPU, a second thread mostly spins
    sections: dict[str, str] = {}
    raw: dict[str, Any] = {}
    for pair in pairs(args.half):
        if args.pairs and pair.name not in args.pairs:
            continue
        accuracy, unpruned = sweep(pair, args.seeds)
        header = ["variant", *[f"{int(r * 100)}% filters" for r in RATIOS]]
        rows = []
        for variant in VARIANTS:
            cells = []
            for ratio in RATIOS:
                values = accuracy[(variant, ratio)]
                per_seed = "/".join(f"{v * 100:.0f}" for v in values)
                cells.append(f"{statistics.fmean(values) * 100:.1f} ({per_seed})")
            rows.append([variant, *cells])
        title = (
            f"{pair.name} ({pair.half}; unpruned {statistics.fmean(unpruned) * 100:.1f}): "
            "top-1 % mean (per seed), no fine-tuning"
        )
        sections[title] = markdown_table(header, rows)
        raw[pair.name] = {f"{v}@{r}": a for (v, r), a in accuracy.items()}
        print(f"\n{title}\n{sections[title]}", flush=True)
        if args.no_diagnosis:
            write_results(
                f"deeplift_collapse_{args.half}{args.suffix}",
                f"DeepLIFT collapse study ({args.half} pairs)",
                sections, raw,
            )  # fmt: skip
            continue
        gaps = [
            accuracy[("deeplift (default)", 0.7)][s] - accuracy[("l1", 0.7)][s]
            for s in range(args.seeds)
        ]
        worst = min(range(args.seeds), key=gaps.__getitem__)
        sections[
            f"{pair.name}, seed {worst} (deeplift - l1 at 70 %: {gaps[worst] * 100:+.1f}): "
            "each layer pruned alone at 70 %"
        ] = table = markdown_table(
            ["layer", "filters", "top-1 deeplift", "top-1 l1",
             "rank corr. relevance vs |w|", "kept by both", "max/mean relevance"],
            diagnose(pair, worst),
        )  # fmt: skip
        print(f"{pair.name}: diagnosed seed {worst}\n{table}", flush=True)
        # written after every pair, so a long run shows what it has
        path = write_results(
            f"deeplift_collapse_{args.half}{args.suffix}",
                f"DeepLIFT collapse study ({args.half} pairs)",
            sections, raw,
        )  # fmt: skip
        print(f"written to {path}", flush=True)


if __name__ == "__main__":
    main()
