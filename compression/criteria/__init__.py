"""Importance criteria behind one interface; look them up by name."""

from __future__ import annotations

from compression.criteria.base import Criterion, LayerScore, Scores, ScoringOptions
from compression.criteria.deeplift import DeepLift, DeepLiftSettings
from compression.criteria.l1 import L1
from compression.criteria.random import Random
from compression.criteria.taylor import Taylor
from compression.errors import InvalidSpec

CRITERIA: dict[str, type[Criterion]] = {c.name: c for c in (DeepLift, L1, Taylor, Random)}


def get_criterion(
    name: str, options: ScoringOptions | None = None, deeplift: DeepLiftSettings | None = None
) -> Criterion:
    if name not in CRITERIA:
        raise InvalidSpec(f"unknown criterion {name!r}; choose one of {sorted(CRITERIA)}")
    if name == DeepLift.name:
        return DeepLift(options, deeplift)
    return CRITERIA[name](options)


__all__ = [
    "CRITERIA",
    "Criterion",
    "DeepLiftSettings",
    "LayerScore",
    "Scores",
    "ScoringOptions",
    "get_criterion",
]
