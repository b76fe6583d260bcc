"""First-order Taylor importance (Molchanov et al. 2017, 2019).

The loss change from removing a channel is approximated by |sum over positions of
activation x gradient| per sample, averaged over samples; for a single weight by |w x g|
with g the gradient of each batch's summed loss, averaged over samples.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from compression.activation_size import BACKWARD_FACTOR, sample_bytes
from compression.batch_fit import with_fitting_batch
from compression.criteria.base import (
    Criterion,
    LayerScore,
    Scores,
    gradients_enabled,
    require_data,
    targets,
)
from compression.criteria.capture import capture_outputs
from compression.data import Dataset
from compression.progress import Monitor, tracked_batches


def _per_channel(activation: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """|sum over positions of a x g| per sample and channel, summed over the batch."""
    product = activation * gradient
    if product.dim() > 2:
        product = product.flatten(2).sum(dim=2)
    return product.abs().sum(dim=0)


class Taylor(Criterion):
    name = "taylor"

    def score(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        data: Dataset | None,
        monitor: Monitor | None = None,
        per_weight: bool = True,
    ) -> Scores:
        data = require_data(data, self.name)
        runtime = self.options.runtime
        runtime.place(model).eval()

        def run(size: int) -> Scores:
            return self._score(model, layers, data, size, monitor)

        per_sample = sample_bytes(model, data, BACKWARD_FACTOR, runtime)
        return with_fitting_batch(
            run, self.options.batch_size, "taylor", runtime, monitor, per_sample
        )

    def _score(
        self,
        model: nn.Module,
        layers: Mapping[str, nn.Module],
        data: Dataset,
        batch_size: int,
        monitor: Monitor | None,
    ) -> Scores:
        """One pass over ``data``; the sums live on the device, the scores return to the CPU."""
        runtime = self.options.runtime
        names = list(layers)
        weights = [layers[name].weight for name in names]
        channel = {name: runtime.put(torch.zeros(layers[name].weight.shape[0])) for name in names}
        weight = {name: torch.zeros_like(layers[name].weight) for name in names}
        with gradients_enabled(weights):
            for x, y in tracked_batches(data, batch_size, monitor):
                x, y = runtime.put(x), runtime.put(y)
                with capture_outputs(layers) as outputs, runtime.autocast():
                    logits = model(x).float()
                loss = F.cross_entropy(
                    logits, targets(logits, y, self.options.target), reduction="sum"
                )
                grads = torch.autograd.grad(loss, [outputs[n] for n in names] + weights)
                for index, name in enumerate(names):
                    activation = outputs[name].detach().float()
                    channel[name] += _per_channel(activation, grads[index].float())
                    grad_w = grads[len(names) + index]
                    weight[name] += (weights[index].detach() * grad_w).abs_()
        count = data.num_samples
        return {
            name: LayerScore(channel[name].cpu() / count, weight[name].float().cpu() / count)
            for name in names
        }
