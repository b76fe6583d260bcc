"""Modules that stand in for nonlinearities while DeepLIFT runs.

Each wraps the original activation, pooling or product module. In the reference pass it
records its inputs and output; in the attribution pass it applies the matching rule against
them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch.nn.functional as F
from torch import Tensor, fx, nn

from compression.attribution.normalize import ELEMENTWISE_TYPES, MAXPOOL_TYPES, Product
from compression.attribution.rules import MaxPoolRule, ProductRule, Rescale


class RuleModule(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.recording = False
        self.reference: tuple[Tensor, ...] | None = None

    def forward(self, *inputs: Tensor) -> Tensor:
        if self.recording:
            return self._record(*inputs)
        if self.reference is None:
            raise RuntimeError("the reference pass must run before the attribution pass")
        return self._apply(*inputs)

    def _record(self, *inputs: Tensor) -> Tensor:
        raise NotImplementedError

    def _apply(self, *inputs: Tensor) -> Tensor:
        raise NotImplementedError


class RescaleModule(RuleModule):
    def _record(self, x: Tensor) -> Tensor:
        y = self.inner(x)
        self.reference = (x.detach(), y.detach())
        return y

    def _apply(self, x: Tensor) -> Tensor:
        x_ref, y_ref = self.reference
        return Rescale.apply(x, x_ref, y_ref, self.inner)


class MaxPoolModule(RuleModule):
    def _pool(self, x: Tensor) -> tuple[Tensor, Tensor]:
        pool = self.inner
        function = F.max_pool1d if isinstance(pool, nn.MaxPool1d) else F.max_pool2d
        return function(
            x, pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, True
        )

    def _record(self, x: Tensor) -> Tensor:
        y, indices = self._pool(x)
        self.reference = (x.detach(), y.detach(), indices)
        return y

    def _apply(self, x: Tensor) -> Tensor:
        x_ref, y_ref, ref_indices = self.reference
        return MaxPoolRule.apply(x, x_ref, y_ref, ref_indices, self._pool)


class ProductModule(RuleModule):
    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        if not (isinstance(a, Tensor) and isinstance(b, Tensor)):
            return a * b  # a traced size (x.size(1)) is input-dependent in the graph only
        return super().forward(a, b)

    def _record(self, a: Tensor, b: Tensor) -> Tensor:
        self.reference = (a.detach(), b.detach())
        return a * b

    def _apply(self, a: Tensor, b: Tensor) -> Tensor:
        a_ref, b_ref = self.reference
        return ProductRule.apply(a, b, a_ref, b_ref)


def _rule_for(module: nn.Module) -> RuleModule:
    if isinstance(module, Product):
        return ProductModule(module)
    if isinstance(module, MAXPOOL_TYPES):
        return MaxPoolModule(module)
    if isinstance(module, ELEMENTWISE_TYPES):
        return RescaleModule(module)
    raise TypeError(f"no DeepLIFT rule for {type(module).__name__}")


@contextmanager
def rules_installed(gm: fx.GraphModule) -> Iterator[list[RuleModule]]:
    """Swap every nonlinearity of a normalized graph for its rule module, then swap back."""
    originals = {name: gm.get_submodule(name) for name in gm.nonlinearities}
    rules = {name: _rule_for(module) for name, module in originals.items()}
    for name, rule in rules.items():
        setattr(gm, name, rule)
    try:
        yield list(rules.values())
    finally:
        for name, module in originals.items():
            setattr(gm, name, module)


@contextmanager
def recording(rules: list[RuleModule]) -> Iterator[None]:
    for rule in rules:
        rule.recording = True
    try:
        yield
    finally:
        for rule in rules:
            rule.recording = False
