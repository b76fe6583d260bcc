"""DeepLIFT relevance of each input element for a few samples: where a model looks.

``R = (x - x') * m``, with ``m`` the DeepLIFT multiplier at the input, from the same rule
modules that ``attribute()`` uses for the layers. The job report draws these maps for the
original and the compressed model side by side, so both must be computed against the same
reference and target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from compression.attribution.baselines import BaselineName, blur, shared_baseline
from compression.attribution.normalize import normalize
from compression.attribution.rule_modules import recording, rules_installed
from compression.attribution.targets import TargetName, target_multiplier, target_score
from compression.data import Dataset


@dataclass(frozen=True)
class InputRelevance:
    """Per sample: relevance of every input element, the predicted class, and how far the
    relevance misses ``score(x) - score(x')`` (completeness, relative)."""

    maps: Tensor
    predicted: Tensor
    completeness_error: float


def input_relevance(
    model: nn.Module,
    data: Dataset,
    index: Tensor,
    *,
    baseline: BaselineName = "zeros",
    target: TargetName = "logit",
) -> InputRelevance:
    """Relevance of the inputs of ``data``'s samples at ``index`` for their true labels.

    ``data`` also supplies the ``mean`` baseline, so it should be the data the job used.
    """
    gm = normalize(model).eval()
    device = next(model.parameters()).device
    x = data.samples(index).to(device)
    labels = data.y[index].to(device)
    shared = shared_baseline(baseline, data)
    reference = shared.to(device) if shared is not None else blur(x)
    with rules_installed(gm) as rules:
        with recording(rules), torch.no_grad():
            reference_logits = gm(reference)
        inputs = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = gm(inputs)
            top = target_multiplier(target, logits.detach(), reference_logits, labels)
            (multiplier,) = torch.autograd.grad((top * logits).sum(), [inputs])
    maps = (x - reference) * multiplier
    explained = target_score(target, logits.detach(), labels) - target_score(
        target, reference_logits.expand_as(logits), labels
    )
    missed = (maps.flatten(1).sum(dim=1) - explained).abs().sum()
    error = float(missed / explained.abs().sum().clamp_min(1e-12))
    return InputRelevance(maps.detach().cpu(), logits.detach().argmax(dim=1).cpu(), error)
