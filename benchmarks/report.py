"""BENCHMARKS.md from the current commit: every method x criterion x strength x fine-tuning
x seed on every registry pair, with DeepLIFT's wins, ties and losses per confirmation pair.

    python -m benchmarks.report            # full: 3 seeds, 5 strengths, fine-tuning none/short
    python -m benchmarks.report --quick    # 1 seed, 3 strengths, no fine-tuning, no auto

Each (pair, seed, method, criterion, fine-tuning) is one ``compress()`` call with a sweep
over the strengths (attribution computed once per call). Finished calls are kept in
``benchmarks/.cache/runs/<mode>-<engine tree>.jsonl``, keyed by the git tree of
``compression/`` and ``jobspec/``, so an interrupted run resumes and a changed engine
starts afresh. Tables go to BENCHMARKS.md, plots to ``benchmarks/results/bench_*.png``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import statistics
import subprocess
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from benchmarks import attribution_speed, headline, latency_vs_macs
from benchmarks.common import markdown_table
from benchmarks.registry import PAIRS, Pair
from benchmarks.registry import pair as pair_by_name
from compression import Dataset, LoadedModel, Spec, compress

ROOT = Path(__file__).parent.parent
RESULTS = Path(__file__).parent / "results"
RUNS = Path(__file__).parent / ".cache" / "runs"
TIE = 1.0  # points of top-1 within which two criteria tie


@dataclass(frozen=True)
class Method:
    """A compression step swept over one setting; criteria name how each is scored."""

    name: str
    parameter: str
    strengths: tuple[float, ...]
    quick: tuple[float, ...]
    criteria: tuple[str, ...]

    def step(self, pair: Pair, criterion: str) -> dict[str, Any]:
        if self.name == "filters":
            return {"type": "prune_filters"}
        if self.name == "weights":
            return {"type": "prune_weights", "layer_types": list(pair.weight_types)}
        weighting = _WEIGHTING[criterion]
        if self.name == "sharing":
            return {"type": "share_weights", "weighting": weighting}
        return {"type": "quantize_mixed", "allocation": weighting}


# criterion label -> weighting of sharing / allocation of mixed precision
_WEIGHTING = {"deeplift": "relevance", "taylor": "relevance", "l1": "magnitude",
              "uniform": "uniform"}  # fmt: skip
PRUNING_CRITERIA = ("deeplift", "l1", "taylor", "random")
METHODS = (
    Method("filters", "ratio", (0.3, 0.5, 0.7, 0.8, 0.9), (0.5, 0.7, 0.9),
           (*PRUNING_CRITERIA, "auto")),
    Method("weights", "sparsity", (0.5, 0.8, 0.9, 0.95, 0.98), (0.8, 0.95, 0.98),
           PRUNING_CRITERIA),
    Method("sharing", "clusters", (2, 4, 8, 16, 32), (2, 4, 16), tuple(_WEIGHTING)),
    Method("precision", "average_bits", (2, 3, 4, 5, 6), (2, 3, 4), tuple(_WEIGHTING)),
)  # fmt: skip
BASELINES = {"filters": ("l1", "taylor"), "weights": ("l1", "taylor"),
             "sharing": ("l1", "uniform"), "precision": ("l1", "uniform")}  # fmt: skip
FINETUNE = {"type": "finetune", "epochs": 1, "lr": 1e-3}


@dataclass(frozen=True)
class Mode:
    name: str
    seeds: tuple[int, ...]
    finetune: tuple[bool, ...]
    quick: bool
    samples: int = 256

    def criteria(self, method: Method) -> tuple[str, ...]:
        """Quick mode leaves out ``auto`` (it runs every criterion: three times the cost)."""
        return tuple(c for c in method.criteria if not (self.quick and c == "auto"))


MODES = {
    "quick": Mode("quick", (0,), (False,), quick=True),
    "full": Mode("full", (0, 1, 2), (False, True), quick=False),
}


def _criterion_spec(criterion: str) -> str:
    """The spec criterion behind a label (uniform weighting needs none; deeplift is cheap)."""
    return "deeplift" if criterion == "uniform" else criterion


_LOADED: dict[tuple[str, int], tuple[LoadedModel, Dataset, Dataset]] = {}


def _load(pair: Pair, seed: int) -> tuple[LoadedModel, Dataset, Dataset]:
    """The trained model and its data, once a process (compress() never modifies them)."""
    if (pair.name, seed) not in _LOADED:
        _LOADED[(pair.name, seed)] = pair.load(seed)
    return _LOADED[(pair.name, seed)]


def run_one(
    pair: Pair, seed: int, method: Method, criterion: str, tuned: bool, mode: Mode
) -> list[dict[str, Any]]:
    """One sweep: a row per strength with accuracy and sizes."""
    model, train_set, test_set = _load(pair, seed)
    strengths = method.quick if mode.quick else method.strengths
    steps = [method.step(pair, criterion), *([FINETUNE] if tuned else [])]
    spec = Spec.model_validate(
        {
            "steps": steps,
            "criterion": _criterion_spec(criterion),
            "seed": seed,
            "attribution": {"samples": mode.samples},
            "evaluation": {"latency_repeats": 3},
            "sweep": {"step": 0, "parameter": method.parameter, "values": list(strengths)},
        }
    )
    metrics = compress(model, train_set, spec, eval_data=test_set).metrics
    before = metrics["before"]
    return [
        {
            "pair": pair.name, "half": pair.half, "seed": seed, "method": method.name,
            "criterion": criterion, "finetune": tuned, "strength": point[method.parameter],
            "accuracy": point["accuracy"], "before_accuracy": before["accuracy"],
            "size_ratio": before["fp32_bytes"] / point["packed_bytes"],
            "macs_ratio": before["macs"] / max(point["macs"], 1),
        }
        for point in metrics["sweep"]["points"]
    ]  # fmt: skip


def engine_tree() -> str:
    """The git tree of the code that produced the numbers (the engine and the spec)."""
    trees = []
    for path in ("compression", "jobspec", "benchmarks/registry.py", "benchmarks/shapes.py"):
        out = subprocess.run(
            ["git", "rev-parse", f"HEAD:{path}"], cwd=ROOT, capture_output=True, text=True
        )
        trees.append(out.stdout.strip()[:8] or "untracked")
    return "-".join(trees)


def plan(
    mode: Mode, pairs: Sequence[Pair], methods: Sequence[Method] = METHODS
) -> list[tuple[Pair, int, Method, str, bool]]:
    """Every run, most telling first (no fine-tuning, filters, confirmation pairs), so a run
    cut short by its budget still has the goal table."""
    ordered = sorted(pairs, key=lambda pair: pair.half != "confirmation")
    return [
        (pair, seed, method, criterion, tuned)
        for tuned in mode.finetune
        for method in methods
        for pair in ordered
        for seed in mode.seeds
        for criterion in mode.criteria(method)
        if not (criterion == "auto" and tuned)  # auto is judged without fine-tuning only
    ]


def _run_keyed(
    pair_name: str, seed: int, method: Method, criterion: str, tuned: bool, mode: Mode
) -> list[dict[str, Any]]:
    """``run_one`` with the pair by name, for a worker process (a pair holds closures)."""
    torch.set_num_threads(1)
    return run_one(pair_by_name(pair_name), seed, method, criterion, tuned, mode)


def _train(pair_name: str, seed: int) -> None:
    """Train (or find cached) one pair's model; distinct (pair, seed) write distinct files."""
    torch.set_num_threads(1)
    pair_by_name(pair_name).load(seed)


def collect(
    mode: Mode, pairs: Sequence[Pair], log: Path, budget_s: float,
    methods: Sequence[Method] = METHODS, jobs: int = 1,
) -> tuple[list[dict[str, Any]], int, int]:  # fmt: skip
    """Run every planned combination not yet in ``log`` (appended as they finish, by this
    process only) on ``jobs`` worker processes until the budget is spent; return all rows,
    the runs done and the runs planned. Models are trained first, one (pair, seed) a task."""
    done: dict[str, list[dict[str, Any]]] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            entry = json.loads(line)
            done[entry["key"]] = entry["rows"]
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    planned = plan(mode, pairs, methods)
    keys = [f"{p.name}|{seed}|{m.name}|{c}|{tuned}" for p, seed, m, c, tuned in planned]
    todo = [(key, run) for key, run in zip(keys, planned, strict=True) if key not in done]
    context = multiprocessing.get_context("spawn")  # a fresh interpreter, not a forked torch
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        models = {(p.name, seed) for _, (p, seed, *_rest) in todo}
        if models:
            list(pool.map(_train, *zip(*sorted(models), strict=True)))
        pending: dict[Future, tuple[str, float]] = {}
        queue = iter(todo)
        while True:
            while len(pending) < jobs and time.monotonic() - started < budget_s:
                item = next(queue, None)
                if item is None:
                    break
                key, (pair, seed, method, criterion, tuned) = item
                future = pool.submit(_run_keyed, pair.name, seed, method, criterion, tuned, mode)
                pending[future] = (key, time.monotonic())
            if not pending:
                break
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                key, begun = pending.pop(future)
                done[key] = future.result()
                with log.open("a") as handle:
                    handle.write(json.dumps({"key": key, "rows": done[key]}) + "\n")
                print(f"{key}: {time.monotonic() - begun:.1f} s", flush=True)
    finished_keys = [key for key in keys if key in done]
    return [row for key in finished_keys for row in done[key]], len(finished_keys), len(keys)


def _mean(values: Iterable[float]) -> float:
    return statistics.fmean(values) * 100


def aggregate(rows: list[dict[str, Any]]) -> dict[tuple, list[float]]:
    """(pair, method, finetune, criterion, strength) -> accuracies over seeds."""
    table: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        key = (row["pair"], row["method"], row["finetune"], row["criterion"], row["strength"])
        table[key].append(row["accuracy"])
    return table


def verdict(deeplift: float, best: float) -> str:
    if deeplift > best + TIE:
        return "win"
    if deeplift < best - TIE:
        return "loss"
    return "tie"


def _strengths(table: dict[tuple, list[float]], pair: str, method: str) -> list[float]:
    return sorted({key[4] for key in table if key[0] == pair and key[1] == method})


def criterion_table(table: dict, pair: Pair, method: Method, tuned: bool, seeds: int) -> str:
    """Mean ± std per criterion and strength; "(n seeds)" where a partial run has fewer."""
    strengths = _strengths(table, pair.name, method.name)
    rows = []
    for criterion in method.criteria:
        cells = []
        for strength in strengths:
            values = table.get((pair.name, method.name, tuned, criterion, strength))
            if not values:
                cells.append("-")
                continue
            spread = statistics.stdev(values) * 100 if len(values) > 1 else 0.0
            short = f" ({len(values)} seeds)" if len(values) < seeds else ""
            cells.append(f"{_mean(values):.1f} ± {spread:.1f}{short}")
        if any(cell != "-" for cell in cells):
            rows.append([criterion, *cells])
    return markdown_table(["criterion", *[f"{method.parameter} {s:g}" for s in strengths]], rows)


def comparisons(table: dict, pair: Pair, method: Method, tuned: bool) -> list[dict[str, Any]]:
    """DeepLIFT vs the best baseline at each strength (means over seeds)."""
    out = []
    for strength in _strengths(table, pair.name, method.name):
        means = {
            criterion: _mean(values)
            for criterion in method.criteria
            if (values := table.get((pair.name, method.name, tuned, criterion, strength)))
        }
        if "deeplift" not in means:
            continue
        baselines = {c: means[c] for c in BASELINES[method.name] if c in means}
        if not baselines:  # a partial run may hold DeepLIFT's point alone
            continue
        best_name = max(baselines, key=baselines.__getitem__)
        out.append(
            {
                "strength": strength,
                "deeplift": means["deeplift"],
                "best": best_name,
                "best_value": baselines[best_name],
                "verdict": verdict(means["deeplift"], baselines[best_name]),
                "auto": means.get("auto"),
                "best_single": max(v for c, v in means.items() if c != "auto"),
            }
        )
    return out


def verdict_table(table: dict, pairs: Sequence[Pair], finetune: Sequence[bool]) -> str:
    rows = []
    for pair in pairs:
        for method in METHODS:
            for tuned in finetune:
                found = comparisons(table, pair, method, tuned)
                if not found:
                    continue
                counts = {v: sum(c["verdict"] == v for c in found) for v in ("win", "tie", "loss")}
                gaps = ", ".join(
                    f"{c['strength']:g}: {c['deeplift'] - c['best_value']:+.1f} ({c['best']})"
                    for c in found
                )
                rows.append(
                    [pair.name, method.name, "short" if tuned else "none",
                     counts["win"], counts["tie"], counts["loss"], gaps]
                )  # fmt: skip
    return markdown_table(
        ["pair", "method", "fine-tuning", "wins", "ties", "losses",
         "DeepLIFT - best baseline, points, by strength"],
        rows,
    )  # fmt: skip


def goal_check(table: dict, pairs: Sequence[Pair]) -> str:
    """Issue 14's goal on filter pruning without fine-tuning, per confirmation pair."""
    filters = METHODS[0]
    rows, strong = [], 0
    for pair in pairs:
        found = comparisons(table, pair, filters, False)
        if not found:
            continue
        within = all(c["deeplift"] >= c["best_value"] - TIE for c in found)
        top = found[-1]
        margin = top["deeplift"] - top["best_value"]
        strong += margin >= 5
        autos = [c for c in found if c["auto"] is not None]
        auto_ok = all(c["auto"] >= c["best_single"] - 0.5 for c in autos) if autos else None
        worst_auto = min((c["auto"] - c["best_single"] for c in autos), default=float("nan"))
        seeds = len(table[(pair.name, filters.name, False, "deeplift", found[0]["strength"])])
        rows.append(
            [pair.name, str(seeds), "yes" if within else "no", f"{margin:+.1f}",
             "-" if auto_ok is None else ("yes" if auto_ok else "no"), f"{worst_auto:+.1f}"]
        )  # fmt: skip
    table_text = markdown_table(
        ["confirmation pair", "seeds", "DeepLIFT >= best - 1 at every ratio",
         "DeepLIFT - best at the highest ratio", "auto >= best single - 0.5 everywhere",
         "auto - best single, worst ratio"],
        rows,
    )  # fmt: skip
    return table_text + f"\n\n+5 points at the highest ratio on {strong} of {len(rows)} pairs."


def table_sizes(rows: list[dict[str, Any]]) -> dict[tuple[str, str, float], list[float]]:
    """(pair, method, strength) -> fp32 / packed bytes of DeepLIFT's runs without fine-tuning
    (the criterion moves the packed size little; fine-tuning not at all)."""
    sizes: dict[tuple[str, str, float], list[float]] = defaultdict(list)
    for row in rows:
        if row["criterion"] == "deeplift" and not row["finetune"]:
            sizes[(row["pair"], row["method"], row["strength"])].append(row["size_ratio"])
    return sizes


def size_vs_bits(sizes: dict[tuple[str, str, float], list[float]]) -> str:
    """What the packed file delivers against the ideal 32 / bits, for sharing (log2 k bits
    per weight) and mixed precision (the average bit width asked for)."""
    parts = []
    for method, bits_of, label in (
        ("sharing", lambda k: math.log2(k), "clusters k"),
        ("precision", lambda b: b, "average bits"),
    ):
        strengths = sorted({key[2] for key in sizes if key[1] == method})
        if not strengths:
            continue
        rows = [["ideal: 32 / bits", *[f"{32 / bits_of(s):.1f}x" for s in strengths]]]
        for pair in PAIRS:
            cells = [
                f"{statistics.fmean(values):.1f}x" if (values := sizes.get((pair.name, method, s)))
                else "-"
                for s in strengths
            ]  # fmt: skip
            if any(cell != "-" for cell in cells):
                rows.append([pair.name, *cells])
        parts.append(
            f"{method} (fp32 parameter bytes / packed file bytes, DeepLIFT, no fine-tuning; "
            "entropy coding of the codes can take a file past 32 / bits, while biases, "
            "batch-norm and other float32 tensors, the architecture and codebooks hold small "
            "models below it):\n\n" + markdown_table([label, *[f"{s:g}" for s in strengths]], rows)
        )
    return "\n\n".join(parts)


def plot(table: dict, rows: list[dict[str, Any]], mode: Mode) -> list[Path]:
    """Accuracy vs packed-size reduction, one panel per pair, one line per criterion."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size: dict[tuple, list[float]] = defaultdict(list)
    for row in rows:
        key = (row["pair"], row["method"], row["finetune"], row["criterion"], row["strength"])
        size[key].append(row["size_ratio"])
    paths = []
    for method in METHODS:
        figure, axes = plt.subplots(2, 4, figsize=(16, 7.5), squeeze=False)
        for ax, pair in zip(axes.flat, PAIRS, strict=False):
            for criterion in method.criteria:
                for tuned in mode.finetune:
                    points = sorted(
                        (statistics.fmean(size[key]), _mean(values))
                        for key, values in table.items()
                        if key[:4] == (pair.name, method.name, tuned, criterion)
                    )
                    if not points:
                        continue
                    xs, ys = zip(*points, strict=True)
                    ax.plot(xs, ys, marker="o", markersize=3, linestyle="--" if tuned else "-",
                            label=f"{criterion}{' +ft' if tuned else ''}")  # fmt: skip
            ax.set_xscale("log")
            ax.set_title(f"{pair.name} ({pair.half})", fontsize=9)
            ax.set_xlabel("size reduction (fp32 / packed bytes)", fontsize=8)
            ax.set_ylabel("top-1 %", fontsize=8)
            ax.grid(alpha=0.3)
        with_lines = [ax for ax in axes.flat if ax.lines]
        if with_lines:  # one legend for the figure, from a panel that has every criterion
            handles, labels = with_lines[0].get_legend_handles_labels()
            figure.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
        figure.suptitle(f"{method.name}: accuracy vs size, mean of {len(mode.seeds)} seed(s)")
        figure.tight_layout(rect=(0, 0.05, 1, 1))
        path = RESULTS / f"bench_{mode.name}_{method.name}.png"
        figure.savefig(path, dpi=80)
        plt.close(figure)
        paths.append(path)
    return paths


def render(
    rows: list[dict[str, Any]], mode: Mode, seconds: float, tree: str, finished: int,
    planned: int, plots: list[Path], output: Path, extras: dict[str, dict[str, str]],
) -> str:  # fmt: skip
    """The whole BENCHMARKS.md; ``extras`` are measured sections (title -> heading -> table)."""
    table = aggregate(rows)
    unpruned: dict[str, list[float]] = defaultdict(list)
    first = min(METHODS[0].quick if mode.quick else METHODS[0].strengths)
    for row in rows:
        if (row["method"], row["criterion"], row["finetune"], row["strength"]) == (
            "filters",
            "l1",
            False,
            first,
        ):  # one unpruned accuracy per pair and seed
            unpruned[row["pair"]].append(row["before_accuracy"])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    confirmation = [p for p in PAIRS if p.half == "confirmation"]
    tuning = [p for p in PAIRS if p.half == "tuning"]
    lines = [
        "# Benchmarks",
        "",
        f"**Generated by `python -m benchmarks.report{' --quick' if mode.quick else ''}` "
        f"({mode.name} mode: {len(mode.seeds)} seed(s), "
        f"fine-tuning {'none and 1 epoch' if True in mode.finetune else 'none'}) at commit "
        f"`{commit}` (engine tree {tree}), {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, "
        f"{platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{seconds / 60:.1f} min of compression runs in this invocation.** "
        + (
            f"**Partial: {finished} of {planned} planned runs are done** (the rest did not "
            "fit the time budget; tables show what was measured, in the order: no "
            "fine-tuning first, filters first, confirmation pairs first)."
            if finished < planned
            else f"All {planned} planned runs are done."
        ),
        "",
        "The pairs (`benchmarks/registry.py`) are small on purpose so everything trains on a "
        "CPU in minutes; the numbers compare criteria on small nets. DeepLIFT's recipe was "
        "chosen on the *tuning* pairs only; the *confirmation* pairs were not used for any "
        f"choice. A win/loss is a difference of more than {TIE:g} point of top-1 between "
        "DeepLIFT and the best baseline (filters/weights: l1, taylor; sharing/precision: "
        "|w|-weighted (l1) and unweighted (uniform)), means over seeds; random is a floor.",
        "",
        markdown_table(
            ["pair", "half", "what", "uncompressed top-1 %"],
            [
                [
                    p.name,
                    p.half,
                    p.description,
                    f"{_mean(unpruned[p.name]):.1f}" if unpruned.get(p.name) else "-",
                ]
                for p in PAIRS
            ],
        ),
        "",
        "## Issue 14's goal on the confirmation pairs (filter pruning, no fine-tuning)",
        "",
        goal_check(table, confirmation),
        "",
        "## Where DeepLIFT wins, ties and loses: confirmation pairs",
        "",
        verdict_table(table, confirmation, mode.finetune),
        "",
        "## Where DeepLIFT wins, ties and loses: tuning pairs",
        "",
        verdict_table(table, tuning, mode.finetune),
        "",
        "## Accuracy vs size per criterion",
        "",
    ]
    lines += [f"![{path.stem}]({os.path.relpath(path, output.parent)})\n" for path in plots]
    quick = RESULTS / "benchmarks_quick.md"
    if not mode.quick and quick.exists():
        lines += [
            f"A quick-mode run (1 seed; its header says how much of it was done) is in "
            f"[{quick.name}]({os.path.relpath(quick, output.parent)}).",
            "",
        ]
    lines += ["## Every table (top-1 %, mean ± std over seeds)", ""]
    for pair in [*confirmation, *tuning]:
        lines += [f"### {pair.name} ({pair.half}): {pair.description}", ""]
        for method in METHODS:
            for tuned in mode.finetune:
                lines += [
                    f"{method.name}, fine-tuning {'1 epoch' if tuned else 'none'}:",
                    "",
                    criterion_table(table, pair, method, tuned, len(mode.seeds)),
                    "",
                ]
    lines += ["## Packed size vs bit count", "", size_vs_bits(table_sizes(rows)), ""]
    for title, tables in extras.items():
        lines += [f"## {title}", ""]
        for heading, text in tables.items():
            lines += [f"{heading}:", "", text, ""]
    lines += [
        "## Other measurements (their own scripts, `make bench-extra`)",
        "",
        "[pruning_baselines](benchmarks/results/pruning_baselines.md), "
        "[sharing_and_precision](benchmarks/results/sharing_and_precision.md), "
        "[deeplift_variants](benchmarks/results/deeplift_variants.md), "
        "[real_archs](benchmarks/results/real_archs.md), "
        "[deployable_onnx](benchmarks/results/deployable_onnx.md), "
        "[kmeans_memory](benchmarks/results/kmeans_memory.md), "
        "[api_load](benchmarks/results/api_load.md).",
        "",
    ]
    return "\n".join(lines)


def measured_sections(quick: bool) -> dict[str, dict[str, str]]:
    """Timings and pipelines measured in this invocation, one thread, after the grid (so
    nothing else of the report runs beside them): title -> heading -> table."""
    sections = {}
    for title, module in (
        ("Attribution cost", attribution_speed),
        ("Latency vs MACs", latency_vs_macs),
        ("Headline pipeline beside Deep Compression's 39x", headline),
    ):
        begun = time.monotonic()
        sections[title] = module.sections(quick)
        print(f"{title}: {time.monotonic() - begun:.1f} s", flush=True)
    return sections


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 seed, 3 strengths, no fine-tuning, no auto"
    )
    parser.add_argument("--pairs", nargs="*", help="only these pairs (default: all)")
    parser.add_argument("--seeds", nargs="*", type=int, help="only these seeds (default: mode's)")
    parser.add_argument("--methods", nargs="*", help="only these methods (default: all)")
    parser.add_argument(
        "--from-log", type=Path,
        help="use (and extend) this run log instead of the current engine's",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument(
        "--budget-minutes", type=float, default=float("inf"),
        help="stop starting new runs after this long and report what is done",
    )  # fmt: skip
    parser.add_argument(
        "--jobs", type=int, default=2, help="worker processes for the grid (one thread each)"
    )
    parser.add_argument(
        "--no-extras", action="store_true",
        help="leave out the measured sections (attribution cost, latency vs MACs, headline)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # on a shared CPU, a second thread mostly spins
    mode = MODES["quick" if args.quick else "full"]
    if args.seeds:
        mode = replace(mode, seeds=tuple(args.seeds))
    chosen = [p for p in PAIRS if not args.pairs or p.name in args.pairs]
    tree = engine_tree()
    log = RUNS / f"{mode.name}-{tree}.jsonl"
    if args.from_log is not None:  # report runs made by an earlier engine, and say which
        log, tree = args.from_log, args.from_log.stem.split("-", 1)[1]
    started = time.monotonic()
    methods = [m for m in METHODS if not args.methods or m.name in args.methods]
    rows, finished, planned = collect(
        mode, chosen, log, args.budget_minutes * 60, methods, args.jobs
    )
    seconds = time.monotonic() - started
    extras = {} if args.no_extras else measured_sections(mode.quick)
    RESULTS.mkdir(exist_ok=True)
    plots = plot(aggregate(rows), rows, mode)
    output = args.output.resolve()
    output.write_text(render(rows, mode, seconds, tree, finished, planned, plots, output, extras))
    (RESULTS / f"bench_{mode.name}.json").write_text(json.dumps(rows))
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
