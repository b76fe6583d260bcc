"""Each accepted model format loads into a runnable module that matches the original."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from compression import zoo
from compression.io import export_onnx, export_pt2, load_model
from tests.compression.toy_models import Branchy, randomize_batchnorm


@pytest.mark.parametrize("export", [export_pt2, export_onnx], ids=["pt2", "onnx"])
def test_exported_model_round_trips(tmp_path: Path, export) -> None:
    torch.manual_seed(0)
    model = randomize_batchnorm(Branchy())
    x = torch.rand(4, 3, 8, 8)
    path = tmp_path / "model.bin"
    export(model, x, path)

    loaded = load_model(str(path))

    assert loaded.input_shape == (3, 8, 8)
    assert loaded.num_classes == 10
    assert torch.allclose(loaded.module(x), model(x), atol=1e-5)
    assert torch.allclose(loaded.module(x[:1]), model(x[:1]), atol=1e-5)  # dynamic batch


def test_pt2_layers_become_modules(tmp_path: Path) -> None:
    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 4, 3)
            self.bn = nn.BatchNorm2d(4)
            self.fc = nn.Linear(4 * 3 * 3, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 2)
            return self.fc(x.view(x.shape[0], -1))

    model = randomize_batchnorm(Functional())
    export_pt2(model, torch.rand(2, 1, 8, 8), tmp_path / "f.pt2")

    loaded = load_model(str(tmp_path / "f.pt2"))

    modules = dict(loaded.module.named_modules())
    assert isinstance(modules["conv"], nn.Conv2d) and isinstance(modules["fc"], nn.Linear)
    assert isinstance(modules["bn"], nn.BatchNorm2d)
    kinds = {type(m) for m in modules.values()}
    assert nn.ReLU in kinds and nn.MaxPool2d in kinds
    assert modules["conv"].weight is not None and modules["conv"].weight.shape == (4, 1, 3, 3)
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(loaded.module(x), model(x), atol=1e-6)
    # the hard-coded view(-1) became a flatten, so a pruned conv no longer breaks the model
    targets = [n.target for n in loaded.module.graph.nodes if n.op == "call_function"]
    assert torch.flatten in targets


@pytest.mark.parametrize(
    ("name", "args", "shape"),
    [
        ("mlp", {"in_features": 16, "hidden": [8]}, (16,)),
        ("lenet5", {}, (1, 28, 28)),
        ("small_cnn", {}, (1, 8, 8)),
        ("vgg", {"width_multiplier": 0.125}, (3, 32, 32)),
        ("resnet20", {"base_width": 4}, (3, 32, 32)),
        ("resnet56", {"base_width": 2}, (3, 32, 32)),
    ],
)
def test_safetensors_fill_a_zoo_architecture(
    tmp_path: Path, name: str, args: dict, shape: tuple[int, ...]
) -> None:
    torch.manual_seed(0)
    model, input_shape = zoo.build(name, args)
    assert input_shape == shape
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))

    loaded = load_model(str(tmp_path / "w.safetensors"), architecture=name, architecture_args=args)

    x = torch.rand(2, *shape)
    assert loaded.source == f"zoo:{name}"
    assert torch.equal(loaded.module(x), model.eval()(x))


def test_resnet_depths_have_the_published_layer_counts() -> None:
    for depth in (20, 56):
        model, _ = zoo.build(f"resnet{depth}")
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) + 1 == depth  # 3x3 convs plus the classifier
