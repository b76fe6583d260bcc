"""Turn images into the input a real model was trained on: fit, channel order, normalization.

Two halves, applied at different times so uint8 images stay uint8 (a quarter of float32)
until a batch is formed: :class:`ImageFit` shapes each decoded image once (resize the shorter
side and center-crop, or resize straight to the input; RGB or BGR), and
:class:`Normalization` turns a uint8 batch into the float batch the model sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from compression.errors import InvalidSpec, ShapeMismatch
from jobspec import Preprocessing

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_MODES = {1: "L", 3: "RGB"}


@dataclass(frozen=True, eq=False)
class Normalization:
    """``(pixels / 255 - mean) / std`` per channel for uint8 batches; float batches get only
    the mean/std part (None: unchanged)."""

    mean: torch.Tensor | None = None
    std: torch.Tensor | None = None

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().div_(255.0) if batch.dtype == torch.uint8 else batch
        if self.mean is None or self.std is None:
            return x
        view = (1, -1, *([1] * (x.dim() - 2)))
        return (x - self.mean.view(view)) / self.std.view(view)


@dataclass(frozen=True)
class ImageFit:
    """How one decoded image becomes a (C, H, W) uint8 array for the model."""

    channels: int
    height: int
    width: int
    resize: int | None = None
    bgr: bool = False

    @property
    def mode(self) -> str:
        return _MODES[self.channels]

    def __call__(self, image: Image.Image) -> np.ndarray:
        image = image.convert(self.mode)
        if self.resize is None:
            if image.size != (self.width, self.height):
                image = image.resize((self.width, self.height), Image.Resampling.BILINEAR)
        else:
            image = _resize_and_crop(image, self.resize, self.width, self.height)
        array = np.asarray(image, dtype=np.uint8)
        array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
        return np.array(array[::-1] if self.bgr else array)  # contiguous and writable


def _resize_and_crop(image: Image.Image, shorter: int, width: int, height: int) -> Image.Image:
    scale = shorter / min(image.size)
    size = (max(width, round(image.size[0] * scale)), max(height, round(image.size[1] * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    return image.crop((left, top, left + width, top + height))


def image_fit(input_shape: tuple[int, ...], preprocessing: Preprocessing | None) -> ImageFit:
    """The fit for a model input (C, H, W); refuse shapes images cannot feed."""
    if len(input_shape) != 3 or input_shape[0] not in _MODES:
        raise ShapeMismatch(
            f"Images give (C, H, W) samples with C = 1 or 3, but the model expects "
            f"{tuple(input_shape)}; upload an .npz of float samples instead."
        )
    preprocessing = preprocessing or Preprocessing()
    channels, height, width = input_shape
    if preprocessing.channel_order == "bgr" and channels != 3:
        raise InvalidSpec("channel_order 'bgr' needs a model with 3 input channels")
    return ImageFit(
        channels, height, width, preprocessing.resize, preprocessing.channel_order == "bgr"
    )


def normalization(preprocessing: Preprocessing | None, channels: int) -> Normalization:
    """The per-batch transform the options ask for."""
    choice = (preprocessing or Preprocessing()).normalize
    if choice == "none":
        return Normalization()
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if choice == "imagenet" else (choice.mean, choice.std)
    if len(mean) != channels:
        raise InvalidSpec(
            f"normalization gives {len(mean)} channel values but the samples have {channels} "
            "channels"
        )
    return Normalization(torch.tensor(mean), torch.tensor(std))
