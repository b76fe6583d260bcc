"""The report's pictures: matplotlib figures turned into ``data:image/png;base64`` URIs.

Figures are built with ``matplotlib.figure.Figure`` (no pyplot): no global figure state, no
GUI backend, safe in a worker that renders many reports.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from compression.report.samples import SampleMaps

DPI = 110
BEFORE, AFTER, PACKED = "#8c96a8", "#2f6db5", "#e07b39"


def data_uri(figure: Figure) -> str:
    """The figure as an embedded PNG (no file, no URL: the report must render offline)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def size_chart(sizes: Sequence[tuple[str, int]]) -> str:
    """Bytes of each form of the model, on a log axis (the packed file can be 50x smaller)."""
    figure = Figure(figsize=(6.4, 0.5 + 0.45 * len(sizes)))
    axes = figure.subplots()
    labels = [label for label, _ in sizes][::-1]
    values = [value for _, value in sizes][::-1]
    colors = [BEFORE, AFTER, PACKED, AFTER][: len(sizes)][::-1]
    bars = axes.barh(labels, values, color=colors)
    axes.set_xscale("log")
    axes.set_xlabel("bytes (log scale)")
    axes.bar_label(bars, labels=[f"{value:,} B" for value in values], padding=3, fontsize=8)
    axes.set_xlim(min(values) / 2, max(values) * 3)
    axes.spines[["top", "right"]].set_visible(False)
    return data_uri(figure)


def layer_chart(layers: Sequence[dict[str, Any]]) -> str:
    """Per layer: share of the relevance, fraction of filters kept, fraction of weights kept."""
    figure = Figure(figsize=(max(4.0, 0.9 * len(layers) + 2), 2.8))
    axes = figure.subplots()
    positions = np.arange(len(layers))
    width = 0.27
    share = [layer.get("score_share") or 0.0 for layer in layers]
    kept = [layer["channels_kept"] / max(layer["channels_before"], 1) for layer in layers]
    dense = [1.0 - layer["sparsity"] for layer in layers]
    axes.bar(positions - width, share, width, label="relevance share", color=PACKED)
    axes.bar(positions, kept, width, label="filters kept", color=AFTER)
    axes.bar(positions + width, dense, width, label="weights non-zero", color=BEFORE)
    axes.set_xticks(positions, [layer["name"] for layer in layers], rotation=30, ha="right")
    axes.set_ylim(0, 1.05)
    axes.legend(fontsize=8, ncols=3, loc="upper center", bbox_to_anchor=(0.5, 1.22))
    axes.spines[["top", "right"]].set_visible(False)
    return data_uri(figure)


def relevance_grid(samples: Sequence[SampleMaps]) -> str:
    """A row per sample: the input, its relevance in the original model and in the compressed
    one, on one colour scale per row (red: evidence for the label, blue: against)."""
    figure = Figure(figsize=(6.0, 1.9 * len(samples)), layout="constrained")
    grid = figure.subplots(len(samples), 3, squeeze=False)
    for row, sample in zip(grid, samples, strict=True):
        limit = max(float(np.abs(sample.before).max()), float(np.abs(sample.after).max()), 1e-12)
        row[0].imshow(sample.image, cmap="gray" if sample.image.ndim == 2 else None)
        row[0].set_title(f"input (label {sample.label})", fontsize=8)
        for axes, relevance, predicted, name in (
            (row[1], sample.before, sample.predicted_before, "original"),
            (row[2], sample.after, sample.predicted_after, "compressed"),
        ):
            image = axes.imshow(relevance, cmap="RdBu_r", vmin=-limit, vmax=limit)
            axes.set_title(f"{name}: predicts {predicted}", fontsize=8)
        figure.colorbar(image, ax=list(row[1:]), shrink=0.8)
        for axes in row:
            axes.set_xticks([])
            axes.set_yticks([])
    return data_uri(figure)


def sweep_chart(sweep: dict[str, Any], floor: float | None) -> str:
    """Accuracy against packed size for every swept value; the chosen point ringed."""
    points = sweep["points"]
    parameter = sweep["parameter"]
    sizes = [point["packed_bytes"] for point in points]
    accuracy = [100 * point["accuracy"] for point in points]
    figure = Figure(figsize=(6.0, 3.2))
    axes = figure.subplots()
    axes.plot(sizes, accuracy, "o-", color=AFTER)
    for point, x, y in zip(points, sizes, accuracy, strict=True):
        axes.annotate(f"{parameter}={point[parameter]:g}", (x, y), fontsize=7,
                      textcoords="offset points", xytext=(4, 4))  # fmt: skip
    chosen = sweep["chosen"]
    axes.scatter([sizes[chosen]], [accuracy[chosen]], s=180, facecolors="none",
                 edgecolors=PACKED, linewidths=2, label="chosen", zorder=3)  # fmt: skip
    if floor is not None:
        axes.axhline(100 * floor, color=BEFORE, linestyle="--", linewidth=1,
                     label="accuracy floor")  # fmt: skip
    axes.set_xscale("log")
    axes.set_xlabel("packed size (bytes, log scale)")
    axes.set_ylabel("accuracy (%)")
    axes.legend(fontsize=8)
    axes.spines[["top", "right"]].set_visible(False)
    return data_uri(figure)
