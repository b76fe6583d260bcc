"""Dataset intake: load an uploaded dataset safely, check it against a model, split it.

``load_dataset`` picks the loader from the file's content, so users need not name files in
any particular way.
"""

from __future__ import annotations

import os
import zipfile

import torch
from PIL import Image

from compression.data.archive import load_image_archive
from compression.data.dataset import Dataset
from compression.data.npz import load_npz
from compression.data.preprocessing import image_fit, normalization
from compression.data.sniff import ACCEPTED_FORMATS, Container, sniff
from compression.data.split import split
from compression.data.validate import classes_covered, fit_to_model, validate_for_model
from compression.errors import InvalidSpec, ShapeMismatch, UnsupportedFormat
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits, check
from jobspec import Preprocessing

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
    limits: IntakeLimits = DEFAULT_LIMITS,
    *,
    preprocessing: Preprocessing | None = None,
) -> Dataset:
    """Load an ``.npz`` or an image-folder archive, told apart by their bytes.

    A zip holding ``x.npy`` or ``y.npy`` is read as an npz, so a missing array is reported as
    such rather than as "no images".

    ``input_shape`` (without the batch axis) and ``preprocessing`` set how images (archives,
    uint8 npz) are fitted and normalized; float npz arrays are taken as they are, so check
    them with :func:`validate_for_model`. ``limits`` bounds what the file may expand to and
    make the loader allocate (see :mod:`compression.intake_limits`).
    """
    if dataset_format(path) == "npz":
        return fit_images(load_npz(path, limits), input_shape, preprocessing, limits)
    return load_image_archive(path, input_shape, limits, preprocessing=preprocessing)


def fit_images(
    dataset: Dataset,
    input_shape: tuple[int, ...],
    preprocessing: Preprocessing | None,
    limits: IntakeLimits = DEFAULT_LIMITS,
) -> Dataset:
    """uint8 images of an npz fitted and normalized like an image archive's; float samples
    only pass when no preprocessing was asked for (they are taken as already prepared)."""
    if dataset.x.dtype != torch.uint8:
        if preprocessing is not None and not preprocessing.is_default():
            raise InvalidSpec(
                "preprocessing applies to images (image archives and .npz of uint8 images); "
                "this .npz holds float samples, which are used as they are"
            )
        return dataset
    fit = image_fit(input_shape, preprocessing)
    x = dataset.x
    if x.shape[2:] != (fit.height, fit.width) or fit.resize is not None or fit.bgr:
        modes = {1: "L", 3: "RGB"}
        if x.shape[1] not in modes:
            raise ShapeMismatch(f"uint8 images need 1 or 3 channels, got {x.shape[1]}.")
        check(
            limits, "max_decoded_dataset_bytes", len(x) * fit.channels * fit.height * fit.width,
            f"the size in bytes of {len(x)} images fitted to {input_shape}",
        )  # fmt: skip
        x = torch.stack([
            torch.from_numpy(fit(Image.fromarray(image.permute(1, 2, 0).squeeze(2).numpy(),
                                                 modes[x.shape[1]])))
            for image in x
        ])  # fmt: skip
    return Dataset(x, dataset.y, dataset.classes, normalization(preprocessing, fit.channels))


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
