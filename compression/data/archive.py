"""Load an image-folder archive (``class_name/image.png``) into tensors shaped for the model.

Class folders are sorted by name to give label indices, and samples are ordered by class then
path, so the same images give the same dataset whether zipped or tarred, in any member order.
"""

from __future__ import annotations

import io
import os
from pathlib import PurePosixPath

import numpy as np
import torch
from PIL import Image

from compression.data.dataset import Dataset
from compression.data.members import DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES, read_files
from compression.errors import InvalidDataset, ShapeMismatch, UnsafeArchive

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
# Only these decoders run: Pillow would otherwise sniff any of its formats, some of which
# (EPS through Ghostscript) are a much larger attack surface than the accepted suffixes suggest.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP")
_MODES = {1: "L", 3: "RGB"}
_LAYOUT = "class_name/image.png, optionally inside one top folder"


def load_image_archive(
    path: str | os.PathLike[str],
    input_shape: tuple[int, ...],
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Dataset:
    """Decode every image of a zip or tar(.gz) to ``input_shape`` (C, H, W), scaled to [0, 1].

    C = 1 converts to grayscale and C = 3 to RGB; images are resized to (H, W) bilinearly. Any
    other shape raises ShapeMismatch, as images cannot feed such a model.
    """
    if len(input_shape) != 3 or input_shape[0] not in _MODES:
        raise ShapeMismatch(
            f"Image archives give (C, H, W) samples with C = 1 or 3, but the model expects "
            f"{tuple(input_shape)}; upload an .npz instead."
        )
    channels, height, width = input_shape
    files = read_files(path, _is_image, max_members=max_members, max_total_bytes=max_total_bytes)
    images: dict[str, np.ndarray] = {}
    for name, data in files:
        if name in images:  # a later copy would silently replace the first
            raise InvalidDataset(f"Member {name!r} appears twice in the archive; keep one.")
        images[name] = _decode(name, data, _MODES[channels], (width, height))
    if not images:
        raise InvalidDataset(
            f"The archive holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); lay it out as "
            f"{_LAYOUT}."
        )
    class_of = _class_folders(list(images))
    classes = tuple(sorted(set(class_of.values())))
    order = sorted(images, key=lambda name: (class_of[name], name))
    x = torch.from_numpy(np.stack([images[name] for name in order]))
    label = {class_name: index for index, class_name in enumerate(classes)}
    y = torch.tensor([label[class_of[name]] for name in order], dtype=torch.int64)
    return Dataset(x, y, classes)


def _is_image(name: str) -> bool:
    """Images by suffix, skipping hidden files and macOS metadata (``.DS_Store``, ``__MACOSX``)."""
    path = PurePosixPath(name)
    hidden = any(part.startswith(".") or part == "__MACOSX" for part in path.parts)
    return not hidden and path.suffix.lower() in IMAGE_SUFFIXES


def _class_folders(names: list[str]) -> dict[str, str]:
    """Map each image path to its class folder, allowing one top folder shared by all."""
    parts = {name: name.split("/") for name in names}
    if all(len(p) == 2 for p in parts.values()):
        return {name: p[0] for name, p in parts.items()}
    if all(len(p) == 3 for p in parts.values()) and len({p[0] for p in parts.values()}) == 1:
        return {name: p[1] for name, p in parts.items()}
    stray = next(name for name, p in parts.items() if len(p) != 2)
    raise InvalidDataset(f"Expected images at {_LAYOUT}; found {stray!r}.")


def _decode(name: str, data: bytes, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as a (C, H, W) float32 array in [0, 1]."""
    try:
        with Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS) as image:
            pixels = image.convert(mode)
    except Image.DecompressionBombError as exc:
        raise UnsafeArchive(
            f"Image {name!r} has more pixels than allowed ({exc}); downscale it before upload."
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidDataset(f"Member {name!r} is not a readable PNG, JPEG or BMP image.") from exc
    if pixels.size != size:
        pixels = pixels.resize(size, Image.Resampling.BILINEAR)
    array = np.asarray(pixels, dtype=np.float32) / np.float32(255)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
