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

from compression.activation_size import BACKWARD_FACTOR, sample_bytes
from compression.attribution.baselines import BaselineName, blur, shared_baseline
from compression.attribution.normalize import normalize
from compression.attribution.rule_modules import recording, rules_installed
from compression.attribution.targets import TargetName, target_multiplier, target_score
from compression.attribution.weight_relevance import weight_relevance
from compression.batch_fit import with_fitting_batch
from compression.data import Dataset
from compression.progress import Monitor, tracked_batches
from compression.runtime import CPU, Runtime

CHANNEL_SCORES = ("relevance", "net", "ablation")


@dataclass(frozen=True)
class LayerRelevance:
    """Per output channel, averaged over samples (each only when asked for):

    - ``channel``: sum over positions of |R|, R = (a - a') * m (DeepLIFT relevance);
    - ``channel_net``: |sum over positions of R| (signed contributions may cancel);
    - ``ablation``: |sum over positions of a * m|, the multiplier-weighted change from
      removing the channel (its output set to zero);
    - ``weights``: |R| per weight.
    """

    channel: Tensor | None
    channel_net: Tensor | None
    ablation: Tensor | None
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
    classes: int = 1,
    batch_size: int = 128,
    channel_scores: tuple[str, ...] = CHANNEL_SCORES,
    per_weight: bool = False,
    monitor: Monitor | None = None,
    runtime: Runtime = CPU,
) -> Attribution:
    """DeepLIFT relevance of every layer in ``layers`` (modules of ``model``), over ``data``.

    ``classes`` > 1 also explains, for every sample, the ``classes - 1`` highest logits other
    than the explained class (its strongest competitors) and adds up the relevance of each:
    a unit that raises a competitor matters to the decision even when it does nothing for the
    true class's logit. Each extra class costs one more backward pass.

    ``channel_scores`` picks which per-channel aggregates to compute (see LayerRelevance);
    each costs a few passes over every layer's activations. ``model`` is moved to
    ``runtime.device``, where both passes run in batches that fit (halved on out-of-memory);
    the returned scores are on the CPU.
    """
    runtime.place(model)
    gm = normalize(model).eval()
    shared = shared_baseline(baseline, data)

    def run(size: int) -> Attribution:
        return _attribute(
            gm, layers, data, shared, target, explain, classes, size, channel_scores, per_weight,
            monitor, runtime,
        )  # fmt: skip

    per_sample = sample_bytes(gm, data, BACKWARD_FACTOR, runtime)
    return with_fitting_batch(run, batch_size, "attribution", runtime, monitor, per_sample)


def _attribute(
    gm: nn.Module,
    layers: Mapping[str, nn.Module],
    data: Dataset,
    shared: Tensor | None,
    target: TargetName,
    explain: str,
    classes: int,
    batch_size: int,
    channel_scores: tuple[str, ...],
    per_weight: bool,
    monitor: Monitor | None,
    runtime: Runtime,
) -> Attribution:
    """One pass over ``data`` (started again from scratch with a smaller batch on OOM)."""
    totals = _Totals(layers, channel_scores, per_weight, runtime.device)
    reference_shared = None if shared is None else runtime.put(shared)
    error, scale = 0.0, 0.0
    with rules_installed(gm) as rules, _capture(layers) as captured:
        for x, y in tracked_batches(data, batch_size, monitor):
            x, y = runtime.put(x), runtime.put(y)
            reference = reference_shared if reference_shared is not None else blur(x)
            captured.in_reference_pass = True
            with recording(rules), torch.no_grad(), runtime.autocast():
                reference_logits = gm(reference).float()
            captured.in_reference_pass = False
            x = x.detach().requires_grad_(True)
            with torch.enable_grad(), runtime.autocast():
                logits = gm(x).float()
            explained_classes = _explained_classes(logits.detach(), y, explain, classes)
            for rank, picked in enumerate(explained_classes):
                top = target_multiplier(target, logits.detach(), reference_logits, picked)
                outputs = [captured.outputs[name] for name in layers]
                last = rank == len(explained_classes) - 1
                with torch.enable_grad():
                    grads = torch.autograd.grad(
                        (top * logits).sum(), [x, *outputs], retain_graph=not last
                    )
                explained = target_score(target, logits.detach(), picked) - target_score(
                    target, reference_logits.expand_as(logits), picked
                )
                conserved = ((x.detach() - reference) * grads[0].float()).flatten(1).sum(dim=1)
                error += float((conserved - explained).abs().sum())
                scale += float(explained.abs().sum())
                totals.add(captured, dict(zip(layers, grads[1:], strict=True)))
    return Attribution(
        layers=totals.averages(data.num_samples),
        completeness_error=error / max(scale, 1e-12),
        samples=data.num_samples,
    )


def _explained_classes(logits: Tensor, labels: Tensor, explain: str, count: int) -> list[Tensor]:
    """The class each pass explains: the label (or prediction), then the strongest others."""
    first = labels if explain == "label" else logits.argmax(dim=1)
    if count <= 1:
        return [first]
    others = logits.scatter(1, first[:, None], float("-inf"))
    ranked = others.topk(min(count, logits.shape[1]) - 1, dim=1).indices
    return [first, *ranked.unbind(dim=1)]


class _Totals:
    """Running sums of the requested relevance aggregates, per layer."""

    def __init__(
        self,
        layers: Mapping[str, nn.Module],
        channel_scores: tuple[str, ...],
        per_weight: bool,
        device: torch.device,
    ) -> None:
        unknown = set(channel_scores) - set(CHANNEL_SCORES)
        if unknown:
            raise ValueError(f"unknown channel scores {sorted(unknown)}")
        self.layers = layers
        self.wanted = channel_scores
        self.sums = {
            (name, kind): torch.zeros(layer.weight.shape[0], device=device)
            for name, layer in layers.items()
            for kind in channel_scores
        }
        self.weights = (
            {name: torch.zeros_like(layer.weight) for name, layer in layers.items()}
            if per_weight
            else None
        )

    def add(self, captured: _Captured, multipliers: dict[str, Tensor]) -> None:
        for name, multiplier in multipliers.items():
            multiplier = multiplier.float()  # bf16 under autocast; sums stay float32
            activation = captured.outputs[name].detach().float()
            if "ablation" in self.wanted:
                ablation = _per_channel(activation * multiplier).abs_()
                self.sums[(name, "ablation")] += ablation.sum(dim=0)
            reference = captured.reference_outputs[name].float()
            relevance = (activation - reference).mul_(multiplier)
            if "net" in self.wanted:
                self.sums[(name, "net")] += _per_channel(relevance).abs_().sum(dim=0)
            if "relevance" in self.wanted:
                self.sums[(name, "relevance")] += _per_channel(relevance.abs_()).sum(dim=0)
            if self.weights is not None:
                inputs = captured.inputs[name].float()
                delta_in = (inputs - captured.reference_inputs[name].float()).expand_as(inputs)
                self.weights[name] += weight_relevance(self.layers[name], multiplier, delta_in)

    def averages(self, count: int) -> dict[str, LayerRelevance]:
        """Divides the per-weight sums in place (on the CPU they are the result): a second
        copy would double the largest allocation of the attribution."""

        def mean(name: str, kind: str) -> Tensor | None:
            total = self.sums.get((name, kind))
            return None if total is None else total.cpu() / count

        return {
            name: LayerRelevance(
                channel=mean(name, "relevance"),
                channel_net=mean(name, "net"),
                ablation=mean(name, "ablation"),
                weights=None if self.weights is None else self.weights[name].cpu().div_(count),
            )
            for name in self.layers
        }
