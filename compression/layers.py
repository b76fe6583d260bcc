"""Find the layers the engine scores and compresses, in the order the model runs them."""

from __future__ import annotations

import torch
from torch import nn

from compression.errors import InvalidSpec

WEIGHTED_TYPES = (nn.Conv1d, nn.Conv2d, nn.Linear)
"""Layers that own a weight tensor with one output channel (filter or neuron) per row."""


def weighted_layers(model: nn.Module, example: torch.Tensor) -> dict[str, nn.Module]:
    """Conv and linear layers by qualified name, in execution order (found by one forward)."""
    names = {
        module: name for name, module in model.named_modules() if isinstance(module, WEIGHTED_TYPES)
    }
    order: list[str] = []
    hooks = [
        module.register_forward_hook(lambda m, i, o: order.append(names[m])) for module in names
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for hook in hooks:
            hook.remove()
    executed = list(dict.fromkeys(order))
    return {name: model.get_submodule(name) for name in executed}


def default_protected(layers: dict[str, nn.Module]) -> list[str]:
    """The first convolution (it sees raw pixels) and the classifier (it defines the outputs)."""
    names = list(layers)
    protected = [name for name in names if isinstance(layers[name], (nn.Conv1d, nn.Conv2d))][:1]
    if names and names[-1] not in protected:
        protected.append(names[-1])
    return protected


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv1d, nn.Conv2d))


def select_layers(
    layers: dict[str, nn.Module],
    step: str,
    layer_types: list[str],
    names: list[str] | None = None,
    protected: list[str] | tuple[str, ...] = (),
) -> list[str]:
    """The layers a step applies to: ``names`` if given, else every layer of the given types,
    minus the protected ones."""
    if names is not None:
        unknown = sorted(set(names) - set(layers))
        if unknown:
            raise InvalidSpec(f"{step} names unknown layers {unknown}; known: {list(layers)}")
        chosen = list(names)
    else:
        kinds = set(layer_types)
        chosen = [
            n for n, layer in layers.items() if ("conv" if is_conv(layer) else "linear") in kinds
        ]
    chosen = [name for name in chosen if name not in protected]
    if not chosen:
        raise InvalidSpec(f"{step} selects no layer; check layer_types, layers and protected")
    return chosen
