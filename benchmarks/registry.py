"""The model/dataset pairs every criterion is judged on, split into tuning and confirmation.

Recipe settings (DeepLIFT's target, baseline, scores, defaults) may be chosen on the
**tuning** pairs only; the **confirmation** pairs report how those choices hold where they
were not tuned. Each half has a plain CNN, a batch-norm CNN and an MLP, so no family is only
seen on one side.

Everything is small on purpose so the whole set trains on a shared 2-core CPU in minutes:
thin widths (VGG-11 at 1/8 width, ResNet-8 at base width 8, a 5-block depthwise net), a
few thousand samples, 8-15 epochs. The numbers are about *relative* criteria on small nets,
not state-of-the-art accuracy. Trained models are cached under ``benchmarks/.cache``
(gitignored), keyed by pair, seed and recipe, so reruns of the report only compress.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer, load_wine
from torch import nn

from benchmarks.common import digits_splits, mnist1d_splits
from benchmarks.shapes import make_shapes
from compression import zoo
from compression.data import Dataset, split
from compression.io import LoadedModel
from compression.training import fit
from compression.zoo.resnet import ResNet, ResNetArgs

CACHE = Path(os.environ.get("XAI_BENCH_CACHE", Path(__file__).parent / ".cache" / "models"))
"""Where trained models are kept; the environment variable moves it (tests: a temp dir that
the report's worker processes see too)."""
Half = Literal["tuning", "confirmation"]


def digits28_splits(seed: int) -> tuple[Dataset, Dataset]:
    """sklearn digits upsampled bilinearly from 8x8 to 28x28 (the LeNet-5 input size)."""
    train, test = digits_splits(seed)

    def upsample(data: Dataset) -> Dataset:
        x = F.interpolate(data.x, size=(28, 28), mode="bilinear", align_corners=False)
        return Dataset(x.contiguous(), data.y, data.classes)

    return upsample(train), upsample(test)


def shapes_splits(seed: int) -> tuple[Dataset, Dataset]:
    """1,000 training and 600 test images of the procedural shapes/textures task."""
    return make_shapes(1000, seed=1000 + seed), make_shapes(600, seed=2000 + seed)


def _tabular(loader: Callable) -> Callable[[int], tuple[Dataset, Dataset]]:
    def splits(seed: int) -> tuple[Dataset, Dataset]:
        bunch = loader()
        x = torch.tensor(bunch.data, dtype=torch.float32)
        data = Dataset(
            x, torch.tensor(bunch.target), tuple(str(name) for name in bunch.target_names)
        )
        train, test = split(data, 0.6, seed)
        mean, std = train.x.mean(dim=0), train.x.std(dim=0).clamp_min(1e-6)
        return (
            Dataset((train.x - mean) / std, train.y, train.classes),
            Dataset((test.x - mean) / std, test.y, test.classes),
        )

    return splits


class DepthwiseCNN(nn.Module):
    """MobileNet-v1-style: a stem conv, then depthwise 3x3 + pointwise 1x1 blocks (BN, ReLU),
    global average pooling and a linear classifier."""

    def __init__(self, num_classes: int = 10, widths: tuple[int, ...] = (16, 32, 64, 64, 128)):
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, widths[0], 3, padding=1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(),
        ]
        strides = (1, 2, 2, 1, 2)
        for before, after, stride in zip(widths, widths[1:], strides[1:], strict=False):
            layers += [
                nn.Conv2d(before, before, 3, stride, 1, groups=before, bias=False),
                nn.BatchNorm2d(before),
                nn.ReLU(),
                nn.Conv2d(before, after, 1, bias=False),
                nn.BatchNorm2d(after),
                nn.ReLU(),
            ]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(widths[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def _zoo(name: str, **args: object) -> Callable[[], tuple[nn.Module, tuple[int, ...]]]:
    return lambda: zoo.build(name, args)


def _resnet8() -> tuple[nn.Module, tuple[int, ...]]:
    return ResNet(ResNetArgs(base_width=8), 8), (3, 32, 32)


def _depthwise() -> tuple[nn.Module, tuple[int, ...]]:
    return DepthwiseCNN(), (3, 32, 32)


@dataclass(frozen=True)
class Pair:
    """A model recipe on a dataset. ``weight_types``: the layers unstructured weight pruning
    works on (the hidden fully connected layers where a net has them, else its convs)."""

    name: str
    half: Half
    description: str
    splits: Callable[[int], tuple[Dataset, Dataset]]
    build: Callable[[], tuple[nn.Module, tuple[int, ...]]]
    epochs: int = 15
    lr: float = 1e-2
    weight_types: tuple[str, ...] = ("linear",)
    recipe: dict = field(default_factory=dict)

    def key(self, seed: int) -> str:
        """Cache key: changes when the recipe (not just the seed) changes."""
        text = json.dumps(
            [self.name, self.description, self.epochs, self.lr, self.recipe], sort_keys=True
        )
        return f"{self.name}-s{seed}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"

    def load(self, seed: int, *, cache: bool = True) -> tuple[LoadedModel, Dataset, Dataset]:
        """(trained model, train split, test split) for ``seed``; trains once per recipe."""
        train_set, test_set = self.splits(seed)
        torch.manual_seed(seed)
        module, shape = self.build()
        path = CACHE / f"{self.key(seed)}.pt"
        if cache and path.exists():
            module.load_state_dict(torch.load(path, weights_only=True))
            module.eval()
        else:
            fit(module, train_set, epochs=self.epochs, lr=self.lr, seed=seed)
            if cache:
                CACHE.mkdir(parents=True, exist_ok=True)
                torch.save(module.state_dict(), path)
        model = LoadedModel(module, shape, train_set.num_classes, f"bench:{self.name}")
        return model, train_set, test_set


PAIRS: tuple[Pair, ...] = (
    # tuning half: the recipe is chosen here
    Pair("digits-smallcnn", "tuning", "small CNN on 8x8 digits (1,078 train)",
         digits_splits, _zoo("small_cnn")),
    Pair("mnist1d-cnn1d", "tuning", "1-D CNN on mnist1d (4,000 train)",
         mnist1d_splits, _zoo("cnn1d"), epochs=8),
    Pair("shapes-vggbn", "tuning", "VGG-11-BN at 1/8 width on shapes32 (1,000 train)",
         shapes_splits, _zoo("vgg", width_multiplier=0.125), epochs=8, lr=3e-3,
         weight_types=("conv",)),
    Pair("wine-mlp", "tuning", "MLP 13-64-32-3 on sklearn wine (107 train)",
         _tabular(load_wine), _zoo("mlp", in_features=13, hidden=[64, 32], num_classes=3),
         epochs=40, lr=3e-3),
    # confirmation half: untouched by tuning
    Pair("digits28-lenet5", "confirmation", "LeNet-5 on digits upsampled to 28x28 (1,078 train)",
         digits28_splits, _zoo("lenet5"), lr=3e-3),
    Pair("shapes-resnet8", "confirmation", "ResNet-8 (base width 8) on shapes32 (1,000 train)",
         shapes_splits, _resnet8, epochs=8, lr=3e-3, weight_types=("conv",)),
    Pair("shapes-depthwise", "confirmation",
         "MobileNet-style depthwise-separable CNN on shapes32 (1,000 train)",
         shapes_splits, _depthwise, epochs=8, lr=3e-3, weight_types=("conv",)),
    Pair("cancer-mlp", "confirmation", "MLP 30-64-32-2 on sklearn breast cancer (341 train)",
         _tabular(load_breast_cancer),
         _zoo("mlp", in_features=30, hidden=[64, 32], num_classes=2), epochs=40, lr=3e-3),
)  # fmt: skip


def pairs(half: Half | None = None) -> tuple[Pair, ...]:
    return tuple(pair for pair in PAIRS if half is None or pair.half == half)


def pair(name: str) -> Pair:
    for candidate in PAIRS:
        if candidate.name == name:
            return candidate
    raise KeyError(f"unknown benchmark pair {name!r}; known: {[p.name for p in PAIRS]}")
