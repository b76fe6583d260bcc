"""DeepLIFT's product rule: relevance is conserved through a * b of two input-dependent tensors.

Hand-derived toy: a = x1 + x2 + 1 and b = 2 x1 + x2 - 1 (two linear units), logit y = a * b.
For x = (1, 2) against the zero reference: a = 4, a' = 1, b = 3, b' = -1, so y - y' = 12 + 1
= 13. The rule's multipliers are m_a = (b + b') / 2 = 1 and m_b = (a + a') / 2 = 2.5, giving
R(a) = 3 * 1 = 3 and R(b) = 4 * 2.5 = 10 (sum 13). The gradient would give b da + a db =
9 + 16 = 25. At the input m_x = 1 * (1, 1) + 2.5 * (2, 1) = (6, 3.5), so R(x) = (6, 7).
"""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import torch
from torch import fx, nn

from compression.attribution import normalize as normalize_module
from compression.attribution.engine import attribute
from compression.attribution.normalize import Product, normalize
from compression.attribution.rule_modules import recording, rules_installed
from compression.data import Dataset
from compression.io import export_onnx, export_pt2, load_model
from compression.layers import weighted_layers
from tests.compression.architecture_families import FAMILIES, INPUT_SHAPE, SqueezeExcite, build

TOLERANCE = 1e-4


class GatedToy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(2, 1)
        self.b = nn.Linear(2, 1)
        with torch.no_grad():
            self.a.weight.copy_(torch.tensor([[1.0, 1.0]]))
            self.a.bias.fill_(1.0)
            self.b.weight.copy_(torch.tensor([[2.0, 1.0]]))
            self.b.bias.fill_(-1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.a(x) * self.b(x)
        return torch.cat([y, -y], dim=1)


def test_the_toy_matches_the_derivation() -> None:
    model = GatedToy()
    data = Dataset(torch.tensor([[1.0, 2.0]]), torch.tensor([0]), ("y", "-y"))
    result = attribute(model, {"a": model.a, "b": model.b}, data)
    assert torch.allclose(result.layers["a"].channel, torch.tensor([3.0]))
    assert torch.allclose(result.layers["b"].channel, torch.tensor([10.0]))
    assert result.completeness_error < 1e-7

    x = data.x.clone().requires_grad_(True)
    gm = normalize(model)
    with rules_installed(gm) as rules:
        with recording(rules), torch.no_grad():
            gm(torch.zeros(1, 2))
        (multiplier,) = torch.autograd.grad(gm(x)[0, 0], x)
    assert torch.allclose(multiplier * x.detach(), torch.tensor([[6.0, 7.0]]))


def _data(n: int = 12) -> Dataset:
    generator = torch.Generator().manual_seed(1)
    x = torch.rand((n, *INPUT_SHAPE), generator=generator) * 2 - 0.5
    return Dataset(x, torch.arange(n) % 10, tuple(str(i) for i in range(10)))


def _error(model: nn.Module, data: Dataset, baseline: str = "zeros") -> float:
    layers = weighted_layers(model, data.x[:2])
    return attribute(model, layers, data, baseline=baseline, batch_size=5).completeness_error


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("baseline", ["zeros", "mean", "blur"])
def test_every_family_conserves_relevance(family: str, baseline: str) -> None:
    assert _error(build(family), _data(), baseline) < TOLERANCE


@pytest.mark.parametrize("family", ["mobilenet_v3", "efficientnet"])
def test_squeeze_excite_needs_the_product_rule(family: str) -> None:
    """Without it (products left to their gradient) the error is what issue 14 measured."""
    model, data = build(family), _data()
    with mock.patch.object(normalize_module, "_isolate_products", lambda gm: []):
        assert _error(model, data) > 0.03
    assert _error(model, data) < TOLERANCE


def test_se_gate_times_map_becomes_a_product_and_constants_do_not() -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 1)
            self.se = SqueezeExcite(4, 2, nn.ReLU, nn.Hardsigmoid)
            self.scale = nn.Parameter(torch.full((1, 4, 1, 1), 0.5))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.conv(x)
            gated = self.se(h) * self.scale * 2.0  # weight and constant: linear, no rule
            silu = h * torch.sigmoid(h)  # x * sigmoid(x) stays one SiLU
            out = gated + silu + h.mul(h)  # a square is a product of two dependent factors
            return out.mean(dim=(2, 3))

    model = Block().eval()
    gm = normalize(fx.symbolic_trace(model))
    kinds = [type(gm.get_submodule(name)).__name__ for name in gm.nonlinearities]
    assert sorted(kinds) == ["Hardsigmoid", "Product", "Product", "ReLU", "SiLU"]
    assert sum(isinstance(m, Product) for m in gm.modules()) == 2
    x = torch.randn(3, 4, 5, 5)
    assert torch.allclose(gm(x), model(x))
    data = Dataset(x, torch.tensor([0, 1, 3]), ("a", "b", "c", "d"))
    layers = {"conv": model.conv, "se.fc1": model.se.fc1, "se.fc2": model.se.fc2}
    assert attribute(model, layers, data, baseline="mean").completeness_error < TOLERANCE


@pytest.mark.parametrize("export", [export_onnx, export_pt2], ids=["onnx", "pt2"])
def test_products_survive_onnx_and_pt2_intake(tmp_path: Path, export) -> None:
    """Exporters write the SE product as aten.mul.Tensor or an ONNX Mul module."""
    export(build("mobilenet_v3"), torch.rand(2, *INPUT_SHAPE), tmp_path / "model")
    loaded = load_model(str(tmp_path / "model"))
    gm = normalize(loaded.module)
    assert sum(isinstance(module, Product) for module in gm.modules()) == 2
    assert _error(loaded.module, _data()) < TOLERANCE
