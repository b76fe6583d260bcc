"""What a relevance explains: a function of the logits, and its multiplier.

- ``logit``: the class logit. Linear in the logits.
- ``margin``: the class logit minus the mean of the others. Linear; removes what all classes
  share, so relevance is about telling classes apart.
- ``log_softmax``: the log-probability of the class (minus the cross-entropy). Nonlinear: its
  multiplier is the gradient averaged along the straight line from the reference logits to
  the logits (Gauss-Legendre quadrature), which conserves it exactly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from torch import Tensor

from compression.errors import InvalidSpec

TargetName = Literal["logit", "margin", "log_softmax"]
QUADRATURE_POINTS = 24


def target_score(name: TargetName, logits: Tensor, classes: Tensor) -> Tensor:
    """The explained quantity per sample."""
    picked = logits.gather(1, classes[:, None]).squeeze(1)
    if name == "logit":
        return picked
    if name == "margin":
        others = (logits.sum(dim=1) - picked) / (logits.shape[1] - 1)
        return picked - others
    if name == "log_softmax":
        return torch.log_softmax(logits, dim=1).gather(1, classes[:, None]).squeeze(1)
    raise InvalidSpec(f"unknown target {name!r}; choose logit, margin or log_softmax")


def target_multiplier(
    name: TargetName, logits: Tensor, reference_logits: Tensor, classes: Tensor
) -> Tensor:
    """d(score)/d(logits) in the DeepLIFT sense: sum(m * (l - l')) == score(l) - score(l')."""
    onehot = torch.zeros_like(logits).scatter_(1, classes[:, None], 1.0)
    if name == "logit":
        return onehot
    if name == "margin":
        return onehot - (1 - onehot) / (logits.shape[1] - 1)
    if name == "log_softmax":
        nodes, weights = np.polynomial.legendre.leggauss(QUADRATURE_POINTS)
        average = torch.zeros_like(logits)
        delta = logits - reference_logits
        for node, weight in zip(nodes, weights, strict=True):
            t = (node + 1) / 2
            average += (weight / 2) * torch.softmax(reference_logits + t * delta, dim=1)
        return onehot - average
    raise InvalidSpec(f"unknown target {name!r}; choose logit, margin or log_softmax")
