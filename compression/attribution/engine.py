"""All-layer DeepLIFT relevance from one forward and one backward pass per batch.

The model is normalized (every nonlinearity its own module), the nonlinearities are swapped
for rule modules, and each batch runs:

1. a reference pass, without autograd, on the baseline (one sample shared by the batch for
   the zeros and mean baselines): every rule module records its input and output;
2. an attribution pass on the inputs, whose backward carries DeepLIFT multipliers. The
   multiplier at every conv/linear output comes out of that same backward, so relevance
   R = (a - a') * m for all layers costs one pass, not one pass per layer.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compression.attribution.baselines import BaselineName, blur, shared_baseline
from compression.attribution.normalize import normalize
from compression.attribution.rule_modules import recording, rules_installed
from compression.attribution.targets import TargetName, target_multiplier, target_score
from compression.attribution.weight_relevance import weight_relevance
from compression.data import Dataset
from compression.progress import Monitor


@dataclass(frozen=True)
class LayerRelevance:
    """Per output channel, averaged over samples:

    - ``channel``: sum over positions of |R|, R = (a - a') * m (DeepLIFT relevance);
    - ``channel_net``: |sum over positions of R| (signed contributions may cancel);
    - ``ablation``: |sum over positions of a * m|, the multiplier-weighted change from
      removing the channel (its output set to zero);
    - ``weights``: |R| per weight (None unless asked for).
    """

    channel: Tensor
    channel_net: Tensor
    ablation: Tensor
    weights: Tensor | None


@dataclass(frozen=True)
class Attribution:
    layers: dict[str, LayerRelevance]
    completeness_error: float
    """sum over samples |sum of input relevance - (f(x) - f(x'))| / sum |f(x) - f(x')|."""
    samples: int


@dataclass
class _Captured:
    reference_inputs: dict[str, Tensor]
    reference_outputs: dict[str, Tensor]
    inputs: dict[str, Tensor]
    outputs: dict[str, Tensor]
    in_reference_pass: bool = False


@contextmanager
def _capture(layers: Mapping[str, nn.Module]) -> Iterator[_Captured]:
    captured = _Captured({}, {}, {}, {})

    def hook_for(name: str):
        def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
            if captured.in_reference_pass:
                captured.reference_inputs[name] = inputs[0].detach()
                captured.reference_outputs[name] = output.detach()
            else:
                captured.inputs[name] = inputs[0].detach()
                captured.outputs[name] = output

        return hook

    handles = [layer.register_forward_hook(hook_for(name)) for name, layer in layers.items()]
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def _per_channel(values: Tensor) -> Tensor:
    """(N, C, ...) -> (N, C) summed over positions."""
    return values.flatten(2).sum(dim=2) if values.dim() > 2 else values


def attribute(
    model: nn.Module,
    layers: Mapping[str, nn.Module],
    data: Dataset,
    *,
    baseline: BaselineName = "zeros",
    target: TargetName = "logit",
    explain: str = "label",
    batch_size: int = 128,
    per_weight: bool = False,
    monitor: Monitor | None = None,
) -> Attribution:
    """DeepLIFT relevance of every layer in ``layers`` (modules of ``model``), over ``data``."""
    gm = normalize(model).eval()
    device = next(model.parameters()).device
    shared = shared_baseline(baseline, data.x)
    names = list(layers)
    sums = {
        name: [torch.zeros(layers[name].weight.shape[0], device=device) for _ in range(3)]
        for name in names
    }
    weight_sums = {name: torch.zeros_like(layers[name].weight) for name in names}
    error, scale = 0.0, 0.0
    batches = data.batches(batch_size)
    total = -(-data.num_samples // batch_size)
    with rules_installed(gm) as rules, _capture(layers) as captured:
        for x, y in monitor.track(batches, total) if monitor else batches:
            x, y = x.to(device), y.to(device)
            reference = shared.to(device) if shared is not None else blur(x)
            captured.in_reference_pass = True
            with recording(rules), torch.no_grad():
                reference_logits = gm(reference)
            captured.in_reference_pass = False
            x = x.clone().requires_grad_(True)
            with torch.enable_grad():
                logits = gm(x)
                classes = y if explain == "label" else logits.detach().argmax(dim=1)
                top = target_multiplier(target, logits.detach(), reference_logits, classes)
                outputs = [captured.outputs[name] for name in names]
                grads = torch.autograd.grad((top * logits).sum(), [x, *outputs])
            explained = target_score(target, logits.detach(), classes) - target_score(
                target, reference_logits.expand_as(logits), classes
            )
            conserved = ((x.detach() - reference) * grads[0]).flatten(1).sum(dim=1)
            error += float((conserved - explained).abs().sum())
            scale += float(explained.abs().sum())
            for name, multiplier in zip(names, grads[1:], strict=True):
                activation = captured.outputs[name].detach()
                relevance = (activation - captured.reference_outputs[name]) * multiplier
                channel, channel_net, ablation = sums[name]
                channel += _per_channel(relevance.abs()).sum(dim=0)
                channel_net += _per_channel(relevance).abs().sum(dim=0)
                ablation += _per_channel(activation * multiplier).abs().sum(dim=0)
                if per_weight:
                    delta_in = captured.inputs[name] - captured.reference_inputs[name]
                    delta_in = delta_in.expand_as(captured.inputs[name])
                    weight_sums[name] += weight_relevance(layers[name], multiplier, delta_in)
    count = data.num_samples
    return Attribution(
        layers={
            name: LayerRelevance(
                channel=sums[name][0].cpu() / count,
                channel_net=sums[name][1].cpu() / count,
                ablation=sums[name][2].cpu() / count,
                weights=(weight_sums[name].cpu() / count) if per_weight else None,
            )
            for name in names
        },
        completeness_error=error / max(scale, 1e-12),
        samples=count,
    )
