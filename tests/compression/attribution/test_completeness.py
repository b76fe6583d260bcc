"""Input relevance adds up to f(x) - f(x') on every kind of graph the engine accepts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compression import zoo
from compression.attribution.engine import attribute
from compression.data import Dataset
from compression.io import LoadedModel, export_onnx, export_pt2, load_model
from compression.layers import weighted_layers
from tests.compression.toy_models import Branchy, randomize_batchnorm

TOLERANCE = 1e-4


class FunctionalAndReused(nn.Module):
    """F.relu, torch.relu, an in-place ReLU and one ReLU module called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 6, 3, padding=1)
        self.conv3 = nn.Conv2d(6, 6, 3, padding=1)
        self.shared = nn.ReLU(inplace=True)
        self.fc = nn.Linear(6 * 4 * 4, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(x))
        x = self.shared(self.conv2(x))
        x = F.max_pool2d(self.shared(self.conv3(x)) + torch.relu(x), 2)
        return self.fc(torch.flatten(x, 1))


class SmoothActivations(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc1 = nn.Linear(8 * 8 * 8, 32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv(x)).flatten(1)
        x = F.hardswish(nn.functional.silu(self.fc1(x)))
        return self.fc3(F.hardsigmoid(self.fc2(x)) * 2 - F.relu6(self.fc2(x)))


def _data(shape: tuple[int, ...], classes: int, n: int = 12) -> Dataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((n, *shape), generator=generator) * 2 - 0.5
    return Dataset(x, torch.arange(n) % classes, tuple(str(i) for i in range(classes)))


def _error(model: nn.Module, data: Dataset, baseline: str = "zeros") -> float:
    layers = weighted_layers(model.eval(), data.x[:2])
    return attribute(model, layers, data, baseline=baseline, batch_size=5).completeness_error


@pytest.mark.parametrize("baseline", ["zeros", "mean", "blur"])
def test_cnn_with_relu_into_maxpool(
    trained_digits_cnn: LoadedModel, digits: Dataset, baseline: str
) -> None:
    subset = digits.subset(torch.arange(64))
    assert _error(trained_digits_cnn.module, subset, baseline) < TOLERANCE


def test_residual_cnn() -> None:
    torch.manual_seed(0)
    model, shape = zoo.build("resnet20", {"base_width": 4, "image_size": 8})
    assert _error(randomize_batchnorm(model), _data(shape, 10)) < TOLERANCE


def test_functional_inplace_and_reused_relus() -> None:
    torch.manual_seed(0)
    assert _error(FunctionalAndReused(), _data((3, 8, 8), 5)) < TOLERANCE


def test_gelu_silu_hardswish_hardsigmoid_relu6() -> None:
    torch.manual_seed(0)
    assert _error(SmoothActivations(), _data((3, 8, 8), 5)) < TOLERANCE


@pytest.mark.parametrize("export", [export_onnx, export_pt2], ids=["onnx", "pt2"])
def test_imported_models(tmp_path: Path, export) -> None:
    torch.manual_seed(0)
    branchy = randomize_batchnorm(Branchy())
    export(branchy, torch.rand(2, 3, 8, 8), tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"))
    assert _error(loaded.module, _data((3, 8, 8), 10)) < TOLERANCE


def test_the_engine_leaves_the_model_as_it_was(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    model = trained_digits_cnn.module
    x = digits.x[:8]
    before = model(x)
    _error(model, digits.subset(torch.arange(16)))
    assert torch.equal(model(x), before)
    assert all(not isinstance(m, nn.Identity) for m in model.modules())
