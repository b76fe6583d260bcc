"""Load a labelled dataset from an ``.npz`` of numeric arrays, never unpickling anything.

``np.load`` unpickles object arrays when allowed to, which runs arbitrary code from the file;
``allow_pickle=False`` makes such arrays an error instead, reported as an unsupported format.
"""

from __future__ import annotations

import math
import os
import zipfile
from typing import BinaryIO

import numpy as np
import torch

from compression.data.dataset import Dataset
from compression.errors import InvalidDataset, UnsafeArchive, UnsupportedFormat
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits, check, check_ratio

_HOW_TO_SAVE = "Save plain numeric arrays with np.savez(path, x=samples, y=labels)."


def load_npz(
    source: str | os.PathLike[str] | BinaryIO,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> Dataset:
    """Read arrays ``x``, ``y`` and optional ``classes`` (strings) from an ``.npz``.

    ``x`` of shape (N, H, W) gains a channel axis; class names default to "0".."K-1".
    uint8 ``x`` are images: kept uint8 (N, C, H, W) (channels-last (N, H, W, C) is turned
    around) and scaled to [0, 1] when a batch is formed; other numbers become float32.
    Every array's header is read and its size checked against ``limits`` before numpy
    allocates it.
    """
    try:
        loaded = np.load(source, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UnsupportedFormat(f"The file is not an .npz archive. {_HOW_TO_SAVE}") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise UnsupportedFormat(f"The file is a single .npy array, not an .npz. {_HOW_TO_SAVE}")
    with loaded as archive:
        declared = sum(info.file_size for info in archive.zip.infolist())
        limit = limits.max_archive_expanded_bytes
        if declared > limit:
            raise UnsafeArchive(
                f"The .npz expands to {declared} bytes, above the {limit} byte limit "
                "(max_archive_expanded_bytes)."
            )
        for info in archive.zip.infolist():
            check_ratio(
                limits.max_compression_ratio, info.file_size, info.compress_size,
                f"Member {info.filename!r}",
            )  # fmt: skip
        x_elements, x_dtype = _declared(archive, "x")
        kept = 1 if x_dtype == np.uint8 else 4  # uint8 images stay uint8, the rest float32
        check(
            limits, "max_decoded_dataset_bytes", kept * x_elements,
            "the size in bytes of the samples x as loaded",
        )  # fmt: skip
        for key in ("y", "classes"):
            _declared(archive, key)
        x = _samples(_array(archive, "x"))
        y = _labels(_array(archive, "y"))
        names = _class_names(archive) if "classes" in archive.files else None
    if names is None:
        names = tuple(str(label) for label in range(int(y.max(initial=-1)) + 1))
    return Dataset(torch.from_numpy(x), torch.from_numpy(y), names)


def _declared(archive: np.lib.npyio.NpzFile, key: str) -> tuple[int, np.dtype | None]:
    """The element count and dtype ``key``'s .npy header declares, refused when its bytes
    could not be in the member: numpy allocates the declared shape before it reads the data."""
    member = f"{key}.npy"
    if member not in archive.zip.namelist():
        return 0, None
    info = archive.zip.getinfo(member)
    try:
        with archive.zip.open(info) as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
    except (ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UnsupportedFormat(
            f"Array {key!r} cannot be read safely: {exc}. {_HOW_TO_SAVE}"
        ) from exc
    elements = math.prod(shape)
    if dtype.itemsize and elements * dtype.itemsize > info.file_size:
        raise UnsafeArchive(
            f"Array {key!r} declares shape {shape} ({elements * dtype.itemsize} bytes), far "
            f"larger than the file holds ({info.file_size} bytes); it is corrupt."
        )
    return elements, dtype


def _array(archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    if key not in archive.files:
        raise InvalidDataset(
            f"The .npz has no array {key!r} (found {sorted(archive.files)}). {_HOW_TO_SAVE}"
        )
    try:
        array = archive[key]
    except ValueError as exc:  # object arrays (pickles) and malformed .npy headers
        raise UnsupportedFormat(
            f"Array {key!r} cannot be read safely: {exc}. {_HOW_TO_SAVE}"
        ) from exc
    except zipfile.BadZipFile as exc:
        raise UnsafeArchive(f"Array {key!r} does not match its declared size or checksum.") from exc
    if not isinstance(array, np.ndarray):  # NpzFile hands back raw bytes for non-.npy members
        raise UnsupportedFormat(f"Member {key!r} is not a .npy array. {_HOW_TO_SAVE}")
    return array


def _samples(x: np.ndarray) -> np.ndarray:
    if x.dtype.kind not in "iuf":
        raise InvalidDataset(f"x must hold integers or floats, got dtype {x.dtype}.")
    if x.ndim not in (2, 3, 4):
        raise InvalidDataset(
            f"x must have shape (N, features), (N, C, L), (N, H, W) or (N, C, H, W), got {x.shape}."
        )
    if x.dtype == np.uint8 and x.ndim in (3, 4):
        return _images(x)
    with np.errstate(over="ignore"):  # out-of-range values become Inf, refused by Dataset
        return np.ascontiguousarray(x, dtype=np.float32)


def _images(x: np.ndarray) -> np.ndarray:
    """uint8 images as contiguous (N, C, H, W), still uint8."""
    if x.ndim == 3:
        return np.ascontiguousarray(x[:, None])
    if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)  # channels last, as images usually come
    return np.ascontiguousarray(x)


def _labels(y: np.ndarray) -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise InvalidDataset(
            f"y must hold integer class labels, got dtype {y.dtype}; convert with "
            "y.astype(np.int64)."
        )
    if y.ndim != 1:
        raise InvalidDataset(f"y must be one label per sample, shape (N,), got {y.shape}.")
    return y.astype(np.int64)


def _class_names(archive: np.lib.npyio.NpzFile) -> tuple[str, ...]:
    classes = _array(archive, "classes")
    if classes.dtype.kind != "U" or classes.ndim != 1:
        raise InvalidDataset(
            f"classes must be a 1-D array of strings, got dtype {classes.dtype} {classes.shape}."
        )
    return tuple(str(name) for name in classes)
