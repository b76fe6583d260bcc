"""Images kept encoded and decoded a batch at a time, for archives too big to hold decoded.

20,000 JPEGs at 224x224 are 3 GB as uint8 pixels but a few hundred MB encoded. Their bytes
are copied once (after the archive's safety checks) into an unnamed temporary file, so any
container (zip, tar, tar.gz) gives random access, and a view (a subset, a batch) is a list of
byte spans into that file: memory holds one batch of decoded pixels at a time.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Callable, Iterable
from typing import IO

import numpy as np
import torch
from PIL import Image

from compression.errors import InvalidDataset, UnsafeArchive

# Only these decoders run: Pillow would otherwise sniff any of its formats, some of which
# (EPS through Ghostscript) are a much larger attack surface than the accepted suffixes suggest.
PILLOW_FORMATS = ("PNG", "JPEG", "BMP")

Fit = Callable[[Image.Image], np.ndarray]


def decode(name: str, data: bytes, fit: Fit) -> np.ndarray:
    """One encoded image as a (C, H, W) uint8 array shaped by ``fit``."""
    try:
        with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as image:
            return fit(image)
    except Image.DecompressionBombError as exc:
        raise UnsafeArchive(
            f"Image {name!r} has more pixels than allowed ({exc}); downscale it before upload."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidDataset(f"Member {name!r} is not a readable PNG, JPEG or BMP image.") from exc


class _Spill:
    """The unnamed file holding every image's bytes back to back (deleted when closed)."""

    def __init__(self) -> None:
        # lives as long as the dataset's views; closed (and so deleted) with the last of them
        self.file: IO[bytes] = tempfile.TemporaryFile(prefix="xai-images-")  # noqa: SIM115
        self.size = 0

    def append(self, data: bytes) -> tuple[int, int]:
        self.file.write(data)
        span = (self.size, len(data))
        self.size += len(data)
        return span

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.file.fileno(), length, offset)


class EncodedImages:
    """``shape`` (N, C, H, W) uint8 samples; indexing gives a view, :meth:`read` pixels."""

    dtype = torch.uint8

    def __init__(
        self, spill: _Spill, spans: torch.Tensor, names: list[str], fit: Fit,
        sample_shape: tuple[int, ...],
    ) -> None:  # fmt: skip
        self._spill, self._spans, self._names, self._fit = spill, spans, names, fit
        self.shape = (int(spans.shape[0]), *sample_shape)

    @classmethod
    def collect(
        cls, images: Iterable[tuple[str, bytes]], fit: Fit, sample_shape: tuple[int, ...]
    ) -> EncodedImages:
        """Copy the encoded images into a spill file, in the given order."""
        spill, spans, names = _Spill(), [], []
        for name, data in images:
            spans.append(spill.append(data))
            names.append(name)
        spill.file.flush()
        table = torch.tensor(spans, dtype=torch.int64).reshape(-1, 2)
        return cls(spill, table, names, fit, sample_shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def names(self) -> list[str]:
        """The archive member of each image, in order."""
        return self._names

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __getitem__(self, index: slice | torch.Tensor) -> EncodedImages:
        if isinstance(index, slice):
            positions = torch.arange(len(self))[index]
        elif index.dtype == torch.bool:
            positions = index.nonzero().flatten()
        else:
            positions = index.flatten()
        names = [self._names[int(i)] for i in positions]
        return EncodedImages(self._spill, self._spans[positions], names, self._fit, self.shape[1:])

    def read(self) -> torch.Tensor:
        """Decode every image of this view into one (n, C, H, W) uint8 tensor."""
        out = torch.empty(self.shape, dtype=torch.uint8)
        for row, ((offset, length), name) in enumerate(zip(self._spans.tolist(), self._names,
                                                           strict=True)):  # fmt: skip
            out[row] = torch.from_numpy(decode(name, self._spill.read(offset, length), self._fit))
        return out
