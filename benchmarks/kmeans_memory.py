"""Peak memory and time of weight sharing for one layer: the old scikit-learn path (KMeans, or
MiniBatchKMeans above 200k weights, then nearest centroids by an n x k float64 matrix) vs the
sort-based torch k-means (``compression.kmeans1d``), relevance-weighted, on the CPU.

Each measurement runs in a fresh process: the layer is made, the kernel's high-water mark of
resident memory is reset (``/proc/self/clear_refs``), ``share_weight`` runs, and the peak
above the resident size just before is reported. Cases whose old path would need more than
``--max-old-gib`` are not run (the machine is shared); their n x k matrices are given from
their sizes instead, and the table says so.

    python -m benchmarks.kmeans_memory            # writes benchmarks/results/kmeans_memory.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import markdown_table, write_results

CASES = [(100_000, 128), (2_400_000, 256)]
MIB = 1024**2


def _old_share_weight(weight: torch.Tensor, clusters: int, relevance: torch.Tensor) -> None:
    """The weight-sharing path before the torch k-means, as it was (no mask): float64 numpy
    copies, scikit-learn, then the nearest centroid by a full n x k distance matrix."""
    from sklearn.cluster import KMeans, MiniBatchKMeans

    values = weight.detach().flatten().double().numpy()
    k = max(1, min(clusters, np.unique(values).size))
    init = np.linspace(values.min(), values.max(), k)[:, None]
    weights = relevance.flatten().double().numpy()
    weights = weights + 1e-12 * max(float(weights.max()), 1e-12)
    kind = MiniBatchKMeans if values.size > 200_000 else KMeans
    extra = {"batch_size": 4096} if kind is MiniBatchKMeans else {}
    fitted = kind(n_clusters=k, init=init, n_init=1, random_state=0, **extra).fit(
        values[:, None], sample_weight=weights
    )
    codebook = fitted.cluster_centers_[:, 0]
    torch.argmin((torch.tensor(values)[:, None] - torch.tensor(codebook)[None, :]).abs(), dim=1)


def _new_share_weight(weight: torch.Tensor, clusters: int, relevance: torch.Tensor) -> None:
    from compression.sharing import share_weight

    share_weight(weight, clusters, relevance)


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure_one(method: str, n: int, k: int) -> dict[str, float]:
    """Peak resident memory above the start, and wall time, of one share_weight call."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(n, generator=generator) * 0.02
    relevance = torch.rand(n, generator=generator)
    run = {"old": _old_share_weight, "new": _new_share_weight}[method]
    run(weight[:1000], min(k, 8), relevance[:1000])  # imports and first-call allocations
    Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark
    before = _status("VmRSS")
    start = time.perf_counter()
    run(weight, k, relevance)
    seconds = time.perf_counter() - start
    return {"peak_mib": (_status("VmHWM") - before) / MIB, "seconds": seconds}


def _in_fresh_process(method: str, n: int, k: int) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.kmeans_memory", "--one", method, str(n), str(k)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "N", "K"), help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-old-gib", type=float, default=3.0)
    args = parser.parse_args()
    torch.set_num_threads(1)  # steadier on a shared machine; both paths alike
    if args.one:
        method, n, k = args.one
        print(json.dumps(measure_one(method, int(n), int(k))))
        return
    rows, raw = [], []
    for n, k in CASES:
        matrix_mib = 2 * n * k * 8 / MIB  # (values - codebook) and its abs(), float64
        result: dict[str, object] = {"weights": n, "k": k, "old_nxk_matrices_mib": matrix_mib}
        for method in ("old", "new"):
            if method == "old" and matrix_mib > args.max_old_gib * 1024:
                result[method] = None
                continue
            runs = [_in_fresh_process(method, n, k) for _ in range(args.repeats)]
            result[method] = runs
        raw.append(result)
        new = result["new"]
        new_peak = statistics.median(r["peak_mib"] for r in new)
        new_time = statistics.median(r["seconds"] for r in new)
        if result["old"] is None:
            old_peak = f"not run (> {matrix_mib:,.0f} MiB: its two n x k matrices alone)"
            old_time, ratio = "-", f"> {matrix_mib / new_peak:,.0f}x"
        else:
            old = result["old"]
            peak = statistics.median(r["peak_mib"] for r in old)
            old_peak = f"{peak:,.1f}"
            old_time = f"{statistics.median(r['seconds'] for r in old):.2f}"
            ratio = f"{peak / new_peak:,.0f}x"
        rows.append([f"{n:,}", k, old_peak, f"{new_peak:,.1f}", ratio, old_time, f"{new_time:.2f}"])
    table = markdown_table(
        ["weights", "k", "old peak MiB", "new peak MiB", "old/new", "old s", "new s"], rows
    )
    note = (
        f"Median of {args.repeats} fresh processes per cell, one thread, relevance-weighted, "
        "CPU. Peak = resident high-water mark above the resident size before the call (the "
        "layer's float32 weights and relevance are already there)."
    )
    path = write_results(
        "kmeans_memory",
        "Weight-sharing k-means: peak memory, old (scikit-learn + n x k) vs new (sort-based)",
        {"Peak memory and time of one layer": f"{table}\n\n{note}"},
        raw,
    )
    print(path.read_text())


if __name__ == "__main__":
    main()
