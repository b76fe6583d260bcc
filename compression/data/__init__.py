"""Dataset intake: load an uploaded dataset safely, check it against a model, split it.

``load_dataset`` picks the loader from the file's content, so users need not name files in
any particular way.
"""

from __future__ import annotations

import os
import zipfile

from compression.data.archive import load_image_archive
from compression.data.dataset import Dataset
from compression.data.members import DEFAULT_MAX_MEMBERS, DEFAULT_MAX_TOTAL_BYTES
from compression.data.npz import load_npz
from compression.data.sniff import ACCEPTED_FORMATS, Container, sniff
from compression.data.split import split
from compression.data.validate import classes_covered, fit_to_model, validate_for_model
from compression.errors import UnsupportedFormat

__all__ = [
    "Dataset",
    "classes_covered",
    "dataset_format",
    "fit_to_model",
    "load_dataset",
    "load_image_archive",
    "load_npz",
    "split",
    "validate_for_model",
]

_NPZ_MEMBERS = frozenset({"x.npy", "y.npy"})


def load_dataset(
    path: str | os.PathLike[str],
    input_shape: tuple[int, ...],
    *,
    max_members: int = DEFAULT_MAX_MEMBERS,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Dataset:
    """Load an ``.npz`` or an image-folder archive, told apart by their bytes.

    A zip holding ``x.npy`` or ``y.npy`` is read as an npz, so a missing array is reported as
    such rather than as "no images".

    ``input_shape`` (without the batch axis) sets how images are decoded; npz arrays are taken
    as they are, so check them with :func:`validate_for_model`. The limits bound what an
    archive may expand to (see :mod:`compression.data.members`).
    """
    if dataset_format(path) == "npz":
        return load_npz(path, max_total_bytes=max_total_bytes)
    return load_image_archive(
        path, input_shape, max_members=max_members, max_total_bytes=max_total_bytes
    )


def dataset_format(path: str | os.PathLike[str]) -> str:
    """``npz`` or ``image_archive``, by content; anything else is an unsupported format."""
    container = sniff(path)
    if container is None:
        raise UnsupportedFormat(f"Unrecognised dataset file. Upload {ACCEPTED_FORMATS}.")
    if container is Container.ZIP and not _NPZ_MEMBERS.isdisjoint(_zip_names(path)):
        return "npz"
    return "image_archive"


def _zip_names(path: str | os.PathLike[str]) -> set[str]:
    try:
        with zipfile.ZipFile(path) as archive:
            return set(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise UnsupportedFormat(
            f"The zip file is damaged ({exc}). Upload {ACCEPTED_FORMATS}."
        ) from exc
