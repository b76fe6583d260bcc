"""A procedurally generated 32x32 RGB image task: five shapes and five textures, ten classes.

Made by code from a seed, so it needs no download and every run sees the same images. Each
image has a random foreground and background colour, position, size and pixel noise, so the
classes differ only in form (disk, square, triangle, ring, cross) or in pattern (horizontal,
vertical or diagonal stripes, checkerboard, dots) inside a square patch: a net must see
shape and texture, not colour.
"""

from __future__ import annotations

import numpy as np
import torch

from compression.data import Dataset

SIDE = 32
CLASSES = (
    "disk", "square", "triangle", "ring", "cross",
    "h-stripes", "v-stripes", "d-stripes", "checker", "dots",
)  # fmt: skip


def _mask(label: int, dx: np.ndarray, dy: np.ndarray, r: float, period: float, phase: float):
    """Foreground mask of one image, from offsets to the centre."""
    patch = np.maximum(np.abs(dx), np.abs(dy)) < r
    wave = 2 * np.pi / period
    if label == 0:
        return dx**2 + dy**2 < r**2
    if label == 1:
        return np.maximum(np.abs(dx), np.abs(dy)) < 0.8 * r
    if label == 2:
        return (np.abs(dx) <= (dy + r) / 2) & (np.abs(dy) <= r)
    if label == 3:
        distance = np.sqrt(dx**2 + dy**2)
        return (distance > 0.55 * r) & (distance < r)
    if label == 4:
        arm = 0.3 * r
        return ((np.abs(dx) < arm) & (np.abs(dy) < r)) | ((np.abs(dy) < arm) & (np.abs(dx) < r))
    if label == 5:
        return patch & (np.sin(wave * dy + phase) > 0)
    if label == 6:
        return patch & (np.sin(wave * dx + phase) > 0)
    if label == 7:
        return patch & (np.sin(wave * (dx + dy) / np.sqrt(2) + phase) > 0)
    if label == 8:
        cells = np.floor((dx + phase) / (period / 2)) + np.floor((dy + phase) / (period / 2))
        return patch & (cells % 2 == 0)
    return patch & (np.sin(wave * dx + phase) > 0.5) & (np.sin(wave * dy + phase) > 0.5)


def make_shapes(count: int, seed: int, noise: float = 0.12) -> Dataset:
    """``count`` images (N, 3, 32, 32) in [0, 1], classes balanced, from ``seed``."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32)
    images = np.empty((count, 3, SIDE, SIDE), dtype=np.float32)
    labels = np.arange(count) % len(CLASSES)
    rng.shuffle(labels)
    for index, label in enumerate(labels):
        cx, cy = rng.uniform(11, 21, size=2)
        r = rng.uniform(6, 10)
        period = rng.uniform(3, 6)
        phase = rng.uniform(0, 2 * np.pi)
        foreground, background = rng.uniform(0, 1, size=(2, 3, 1, 1))
        while np.abs(foreground - background).sum() < 0.6:  # keep the form visible
            foreground, background = rng.uniform(0, 1, size=(2, 3, 1, 1))
        mask = _mask(int(label), xx - cx, yy - cy, r, period, phase)[None]
        image = np.where(mask, foreground, background)
        images[index] = image + rng.normal(0, noise, size=image.shape)
    x = torch.from_numpy(np.clip(images, 0, 1))
    return Dataset(x, torch.from_numpy(labels.astype(np.int64)), CLASSES)
