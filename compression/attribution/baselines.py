"""Reference inputs for DeepLIFT: what "absence of signal" means for this data.

``zeros`` and ``mean`` are one sample shared by the whole batch (its forward pass runs once),
``blur`` is per sample: each input smoothed with a Gaussian, keeping colour and layout but
removing the detail a classifier relies on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F

from compression.errors import InvalidSpec

if TYPE_CHECKING:
    from compression.data import Dataset

BaselineName = Literal["zeros", "mean", "blur"]
BLUR_SIGMA = 1.5


def shared_baseline(name: BaselineName, calibration: Dataset) -> torch.Tensor | None:
    """A (1, ...) reference for every sample (in model-input space, after any
    normalization), or None when the baseline is per sample."""
    if name == "zeros":
        return torch.zeros((1, *calibration.sample_shape))
    if name == "mean":
        return calibration.mean_sample()
    if name == "blur":
        return None
    raise InvalidSpec(f"unknown baseline {name!r}; choose zeros, mean or blur")


def blur(x: torch.Tensor, sigma: float = BLUR_SIGMA) -> torch.Tensor:
    """Separable Gaussian blur over the spatial axes of (N, C, H, W) or (N, C, L) inputs."""
    if x.dim() not in (3, 4):
        raise InvalidSpec("the blur baseline needs image (N, C, H, W) or signal (N, C, L) inputs")
    radius = max(1, int(3 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    channels, size = x.shape[1], kernel.numel()
    if x.dim() == 3:
        padded = F.pad(x, (radius, radius), mode="replicate")
        return F.conv1d(padded, kernel.view(1, 1, size).expand(channels, 1, size), groups=channels)
    rows = F.pad(x, (0, 0, radius, radius), mode="replicate")
    rows = F.conv2d(rows, kernel.view(1, 1, size, 1).expand(channels, 1, size, 1), groups=channels)
    columns = F.pad(rows, (radius, radius, 0, 0), mode="replicate")
    return F.conv2d(
        columns, kernel.view(1, 1, 1, size).expand(channels, 1, 1, size), groups=channels
    )
