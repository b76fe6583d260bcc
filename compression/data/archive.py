"""Load an image-folder archive (``class_name/image.png``) as uint8 images shaped for the model.

Labels: folders named by integers (``0/``, ``7/``, ``999/``) are those class indices of the
model, so a calibration set may hold any subset of its classes; other folder names are
numbered in sorted order, or by their line in a ``classes.txt`` at the archive's root (the
model's class names in order) when there is one. Samples are ordered by label then path, so
the same images give the same dataset whether zipped or tarred, in any member order.

Small archives are decoded once into a uint8 tensor; bigger ones stay encoded
(:class:`EncodedImages`) and are decoded a batch at a time, so memory holds one batch of
pixels however many images there are.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import PurePosixPath

import numpy as np
import torch
from PIL import Image

from compression.data.dataset import Dataset
from compression.data.encoded_images import EncodedImages, Fit
from compression.data.members import read_files
from compression.data.preprocessing import image_fit, normalization
from compression.errors import InvalidDataset, UnsafeArchive
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits, check
from jobspec import Preprocessing

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
CLASS_LIST = "classes.txt"
DECODED_IN_MEMORY_BYTES = 256 * 1024**2
"""Archives whose decoded uint8 pixels fit in this are decoded once and kept in memory."""
_LAYOUT = "class_name/image.png, optionally inside one top folder"


def load_image_archive(
    path: str | os.PathLike[str],
    input_shape: tuple[int, ...],
    limits: IntakeLimits = DEFAULT_LIMITS,
    *,
    preprocessing: Preprocessing | None = None,
) -> Dataset:
    """Every image of a zip or tar(.gz), fitted to ``input_shape`` (C, H, W) as
    ``preprocessing`` says (default: resized straight to (H, W), RGB, scaled to [0, 1]).

    C = 1 converts to grayscale and C = 3 to RGB; any other shape raises ShapeMismatch, as
    images cannot feed such a model. ``limits`` bounds the archive and each image's pixels
    (read from its header, before it is decoded, whenever it is decoded).
    """
    fit = image_fit(input_shape, preprocessing)
    members = read_files(path, _is_wanted, limits)
    class_list: list[list[str]] = []

    def images() -> Iterator[tuple[str, bytes]]:
        seen: set[str] = set()
        for name, data in members:
            if PurePosixPath(name).name == CLASS_LIST:
                class_list.append(_read_class_list(name, data))
                continue
            if name in seen:  # a later copy would silently replace the first
                raise InvalidDataset(f"Member {name!r} appears twice in the archive; keep one.")
            seen.add(name)
            yield name, data

    shape = (fit.channels, fit.height, fit.width)
    encoded = EncodedImages.collect(
        images(), _pixels_bounded(fit, limits), shape
    )  # streamed to disk, archive order
    if not len(encoded):
        raise InvalidDataset(
            f"The archive holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); lay it out as "
            f"{_LAYOUT}."
        )
    class_of = _class_folders(encoded.names)
    classes, label = _labels(sorted(set(class_of.values())), class_list[0] if class_list else None)
    order = sorted(range(len(encoded)), key=lambda i: (label[class_of[encoded.names[i]]],
                                                         encoded.names[i]))  # fmt: skip
    encoded = encoded[torch.tensor(order, dtype=torch.int64)]
    y = torch.tensor([label[class_of[name]] for name in encoded.names], dtype=torch.int64)
    x = encoded.read() if len(order) * math.prod(shape) <= DECODED_IN_MEMORY_BYTES else encoded
    return Dataset(x, y, classes, normalization(preprocessing, fit.channels))


def _pixels_bounded(fit: Fit, limits: IntakeLimits) -> Fit:
    """``fit`` behind a check of the image's header: pixels are allocated only after it."""

    def bounded(image: Image.Image) -> np.ndarray:
        check(
            limits, "max_image_pixels", image.width * image.height,
            f"the pixel count of an image ({image.width}x{image.height})", UnsafeArchive,
        )  # fmt: skip
        return fit(image)

    return bounded


def _is_wanted(name: str) -> bool:
    path = PurePosixPath(name)
    return _is_image(name) or (path.name == CLASS_LIST and len(path.parts) <= 2)


def _read_class_list(name: str, data: bytes) -> list[str]:
    try:
        lines = data.decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InvalidDataset(f"{name!r} must be UTF-8 text, one class name a line.") from exc
    names = [line.strip() for line in lines if line.strip()]
    if len(set(names)) != len(names):
        raise InvalidDataset(f"{name!r} names a class twice.")
    return names


def _labels(folders: list[str], class_list: list[str] | None) -> tuple[tuple[str, ...], dict]:
    """Class names (index = label) and the label of each folder."""
    if class_list is not None:
        unknown = sorted(set(folders) - set(class_list))
        if unknown:
            raise InvalidDataset(
                f"Folders {unknown[:5]} are not listed in {CLASS_LIST}; list every class of "
                "the model there, one name a line, in the model's order."
            )
        return tuple(class_list), {name: class_list.index(name) for name in folders}
    if all(folder.isdigit() for folder in folders):
        largest = max(int(folder) for folder in folders)
        return tuple(str(i) for i in range(largest + 1)), {f: int(f) for f in folders}
    return tuple(folders), {name: index for index, name in enumerate(folders)}


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
