"""Builders for small dataset files, written under each test's tmp_path."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def make_png() -> Callable[..., bytes]:
    """Encode a solid-colour image, so resized pixel values stay exact."""

    def build(color: tuple[int, ...] | int, size: tuple[int, int] = (6, 4), mode: str = "RGB"):
        buffer = io.BytesIO()
        Image.new(mode, size, color).save(buffer, format="PNG")
        return buffer.getvalue()

    return build


@pytest.fixture
def make_zip(tmp_path: Path) -> Callable[..., Path]:
    def build(members: dict[str, bytes], name: str = "data.zip") -> Path:
        path = tmp_path / name
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            for member, data in members.items():
                archive.writestr(member, data)
        return path

    return build


@pytest.fixture
def make_tar(tmp_path: Path) -> Callable[..., Path]:
    def build(members: dict[str, bytes], name: str = "data.tar.gz", mode: str = "w:gz") -> Path:
        path = tmp_path / name
        with tarfile.open(path, mode) as archive:
            for member, data in members.items():
                info = tarfile.TarInfo(member)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        return path

    return build


@pytest.fixture
def make_npz(tmp_path: Path) -> Callable[..., Path]:
    def build(name: str = "data.npz", **arrays: np.ndarray) -> Path:
        path = tmp_path / name
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        return path

    return build
