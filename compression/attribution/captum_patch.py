"""Make captum 0.9's DeepLift correct on the graphs we normalize, for cross-checks.

Our engine (``engine.py``) does not use captum's hooks; captum serves as the per-layer
reference in tests and benchmarks, and for that it must be right. Two captum bugs break it
below a ReLU that feeds a MaxPool:

(a) the max-pool rule's fallback for |x - x'| < eps returns ``grad_input[0]``, the first
    sample's gradient, for the whole batch (captum issue #1276);
(b) a module's output-gradient hook and the next module's input hook are registered on the
    same tensor, and the ReLU's hook runs first, so it reads the plain max-pool gradient
    instead of the DeepLIFT multiplier.

``patched_deeplift()`` fixes (a) by installing a corrected max-pool rule and registers a
Rescale rule for activations captum does not know (GELU, SiLU, ReLU6, Hardswish, ...);
``separate_chained_nonlinearities`` fixes (b) by giving each hooked module's output its own
tensor. Remove both once captum releases the fixes (``captum_still_broken`` tells).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from captum.attr._core import deep_lift
from torch import Tensor, fx, nn

from compression.attribution.normalize import ELEMENTWISE_TYPES, RULE_TYPES


def _fixed_maxpool(
    module: nn.Module,
    inputs: Tensor,
    outputs: Tensor,
    grad_input: Tensor,
    grad_output: Tensor,
    eps: float = 1e-10,
) -> Tensor:
    """captum's max-pool rule with the per-sample fallback gradient (fix a)."""
    spatial = 1 if isinstance(module, nn.MaxPool1d) else 2
    pool = F.max_pool1d if spatial == 1 else F.max_pool2d
    unpool = F.max_unpool1d if spatial == 1 else F.max_unpool2d
    with torch.no_grad():
        x, x_ref = inputs.chunk(2)
        y, y_ref = outputs.chunk(2)
        delta_in = torch.cat(2 * [x - x_ref])
        top = torch.max(y, y_ref)
        delta_out = torch.cat([top - y_ref, y - top])
        _, indices = pool(
            module.input, module.kernel_size, module.stride, module.padding,
            module.dilation, module.ceil_mode, True,
        )  # fmt: skip
        moved, moved_ref = torch.chunk(
            unpool(
                grad_output * delta_out, indices, module.kernel_size, module.stride,
                module.padding, list(module.input.shape),
            ),
            2,
        )  # fmt: skip
        moved = torch.cat(2 * [moved + moved_ref])
    return torch.where(abs(delta_in) < eps, grad_input, moved / delta_in)


@contextmanager
def patched_deeplift() -> Iterator[None]:
    rules = deep_lift.SUPPORTED_NON_LINEAR
    saved = dict(rules)
    for pool_type in (nn.MaxPool1d, nn.MaxPool2d):
        rules[pool_type] = _fixed_maxpool
    for activation in ELEMENTWISE_TYPES:
        rules.setdefault(activation, deep_lift.nonlinear)
    try:
        yield
    finally:
        rules.clear()
        rules.update(saved)


def separate_chained_nonlinearities(gm: fx.GraphModule) -> fx.GraphModule:
    """Insert a no-op view after every rule module, so hooks never share a tensor (fix b)."""
    for node in list(gm.graph.nodes):
        if node.op != "call_module":
            continue
        if not isinstance(gm.get_submodule(str(node.target)), RULE_TYPES):
            continue
        with gm.graph.inserting_after(node):
            view = gm.graph.call_method("view_as", (node, node))
        for user in [user for user in node.users if user is not view]:
            user.replace_input_with(node, view)
    gm.recompile()
    return gm


def captum_still_broken() -> bool:
    """True while captum's own max-pool rule keeps bug (a)."""
    import inspect

    return "grad_input[0]" in inspect.getsource(deep_lift.maxpool)
