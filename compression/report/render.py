"""``report.html``: one self-contained page that explains a finished job.

Everything is inside the file: styles inline, pictures as base64 PNG, no script, and a
Content-Security-Policy that forbids loading anything else, so it renders the same offline,
from the API, or attached to an e-mail. Every number that comes from the job's metrics
carries ``data-metric`` (its path in the metrics) so a test can hold the page to the API.
"""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from compression.pipeline import COMPLETENESS_LIMIT
from compression.report import figures
from compression.report.samples import RelevanceSamples

CONTENT_SECURITY_POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
"""What the page may load: its own inline styles and embedded images, nothing else."""

FORMATS = {
    "percent": lambda v: f"{100 * v:.2f} %",
    "bytes": lambda v: f"{v:,} B",
    "ratio": lambda v: f"{v:.2f}×",
    "ms": lambda v: f"{v:.3f} ms",
    "count": lambda v: f"{v:,}",
    "sci": lambda v: f"{v:.2e}",
}
"""How each kind of number is shown (tests parse the text back with the same rules)."""


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("compression.report"),
        autoescape=select_autoescape(default=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["shown"] = shown
    return environment


def shown(value: float | None, unit: str) -> str:
    """A number as the report prints it; a missing one as a dash."""
    return "–" if value is None else FORMATS[unit](value)


def completeness_sentence(error: float | None, criterion: str) -> str:
    """What the attribution completeness error means, in one plain sentence."""
    if error is None:
        return (
            f"No DeepLIFT attribution ran in this job (criterion {criterion}), so there is no "
            "completeness error to report."
        )
    if error <= COMPLETENESS_LIMIT:
        return (
            f"The relevance scores add up to the change in the model's output they explain to "
            f"within {error:.1e} (relative), so the scores that decided what to cut are exact "
            "for this model."
        )
    return (
        f"The relevance scores miss the change in the model's output by {error:.1%}: some "
        "operator of this model has no conserving DeepLIFT rule, so treat the scores (and "
        "the choices they made) as approximate."
    )


def delivered_onnx(metrics: dict[str, Any]) -> tuple[str, dict[str, Any] | None]:
    """Where the ONNX section of the metrics is, and what it holds: the worker files it
    under ``export``, the library at the top level."""
    if (metrics.get("export") or {}).get("onnx"):
        return "export.onnx", metrics["export"]["onnx"]
    return "onnx", metrics.get("onnx")


def render_report(
    metrics: dict[str, Any],
    relevance: RelevanceSamples,
    *,
    title: str,
    spec: dict[str, Any] | None = None,
) -> str:
    """The report page for a job's ``metrics`` (as stored), with input relevance maps."""
    onnx_path, onnx = delivered_onnx(metrics)
    fp32 = metrics["before"]["fp32_bytes"]
    packed = metrics["after"]["packed_bytes"]
    sizes = [("fp32 (original)", fp32)]
    delivered = onnx["bytes"]["model.onnx"] if onnx else None
    if delivered is not None:
        sizes.append(("model.onnx (delivered)", delivered))
    sizes.append(("model.xaic (packed)", packed))
    sweep = metrics.get("sweep")
    floor = None
    if sweep and metrics["before"]["accuracy"] is not None:
        floor = metrics["before"]["accuracy"] - sweep["max_accuracy_drop"]
    attribution = metrics.get("attribution") or {}
    return (
        _environment()
        .get_template("report.html")
        .render(
            title=title,
            csp=CONTENT_SECURITY_POLICY,
            m=metrics,
            spec=spec or {},
            onnx=onnx,
            onnx_path=onnx_path,
            delivered=delivered,
            delivered_ratio=fp32 / delivered if delivered else None,
            size_chart=figures.size_chart(sizes),
            layer_chart=figures.layer_chart(metrics["layers"]) if metrics["layers"] else None,
            relevance=relevance,
            relevance_grid=figures.relevance_grid(relevance.samples) if relevance.samples else None,
            sweep=sweep,
            sweep_chart=figures.sweep_chart(sweep, floor) if sweep else None,
            completeness=completeness_sentence(
                attribution.get("completeness_error"), metrics.get("criterion", "?")
            ),
            attribution=attribution,
        )
    )
