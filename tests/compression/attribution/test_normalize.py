"""Normalization gives every nonlinearity call its own out-of-place module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import fx, nn

from compression.attribution.normalize import normalize
from tests.compression.attribution.test_completeness import FunctionalAndReused


def test_each_call_gets_its_own_module() -> None:
    model = FunctionalAndReused()
    gm = normalize(model)
    modules = [gm.get_submodule(name) for name in gm.nonlinearities]
    # F.relu, shared (twice), torch.relu, F.max_pool2d: five calls, five modules
    assert [type(m) for m in modules] == [nn.ReLU, nn.ReLU, nn.ReLU, nn.ReLU, nn.MaxPool2d]
    assert len({id(m) for m in modules}) == 5
    assert not any(getattr(m, "inplace", False) for m in modules)
    assert model.shared.inplace  # the user's model is not touched
    assert gm.conv1 is model.conv1  # layers are shared, not copied
    x = torch.rand(2, 3, 8, 8)
    assert torch.allclose(gm(x), model(x))


def test_exported_silu_pattern_becomes_one_silu() -> None:
    class Exported(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(3, 3)
            self.gate = nn.Sigmoid()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.fc(x)
            return h * self.gate(h)

    model = Exported()
    gm = normalize(fx.symbolic_trace(model))
    assert [type(gm.get_submodule(n)) for n in gm.nonlinearities] == [nn.SiLU]
    x = torch.randn(4, 3)
    assert torch.allclose(gm(x), F.silu(model.fc(x)))
