"""The per-layer table of a compression report: what happened to each conv/linear layer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

from torch import nn

from compression.criteria import Scores
from compression.encoding import LayerEncoding, QuantizedWeights, SharedWeights


@dataclass(frozen=True)
class LayerShape:
    type: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class LayerRow:
    name: str
    type: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    channels_before: int
    channels_kept: int
    sparsity: float
    score_share: float | None
    bits: int
    clusters: int | None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def snapshot(layers: dict[str, nn.Module]) -> dict[str, LayerShape]:
    """Record layer types and weight shapes before compression."""
    return {name: LayerShape(type(m).__name__, tuple(m.weight.shape)) for name, m in layers.items()}


def layer_table(
    before: dict[str, LayerShape],
    model: nn.Module,
    scores: Scores | None,
    encodings: Mapping[str, LayerEncoding] | None = None,
) -> list[LayerRow]:
    """One row per layer of ``before``; ``scores`` (from the first scoring) gives each
    layer's share of the total importance."""
    total = sum(score.total for score in scores.values()) if scores else 0.0
    modules = dict(model.named_modules())
    rows = []
    for name, shape in before.items():
        weight = modules[name].weight.detach()
        zeros = int((weight == 0).sum())
        share = scores[name].total / total if scores and name in scores and total > 0 else None
        rows.append(
            LayerRow(
                name=name,
                type=shape.type,
                shape_before=shape.shape,
                shape_after=tuple(weight.shape),
                channels_before=shape.shape[0],
                channels_kept=int(weight.shape[0]),
                sparsity=zeros / weight.numel(),
                score_share=share,
                bits=_bits((encodings or {}).get(name)),
                clusters=_clusters((encodings or {}).get(name)),
            )
        )
    return rows


def _bits(encoding: LayerEncoding | None) -> int:
    """Bits per weight code: quantized width, shared index width, or 32 (float)."""
    if isinstance(encoding, QuantizedWeights):
        return encoding.bits
    if isinstance(encoding, SharedWeights):
        return encoding.index_bits
    return 32


def _clusters(encoding: LayerEncoding | None) -> int | None:
    return encoding.codebook.numel() if isinstance(encoding, SharedWeights) else None
