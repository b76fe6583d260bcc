"""The corpus, built once per test session (at collection, so each case is its own test)."""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

from tests.hostile.corpus import Case, build


@lru_cache
def scratch() -> Path:
    return Path(tempfile.mkdtemp(prefix="xai-hostile-"))


def marker() -> Path:
    """Where a payload would leave its mark; no test may ever find it."""
    return scratch() / "payload-ran"


@lru_cache
def genuine_pt2() -> bytes:
    import torch

    from compression.io.user_formats import write_pt2
    from compression.zoo.small_cnn import SmallCNN, SmallCNNArgs

    torch.manual_seed(0)
    model = SmallCNN(SmallCNNArgs(in_channels=1, image_size=8, num_classes=3))
    return write_pt2(model, torch.rand(2, 1, 8, 8), scratch() / "genuine.pt2").read_bytes()


@lru_cache
def corpus() -> dict[str, Case]:
    return {case.name: case for case in build(genuine_pt2(), marker())}
