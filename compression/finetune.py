"""Fine-tuning that respects what compression decided.

- pruned weights: their gradient is masked and they are zeroed again after every update;
- shared layers: the codebook is trained, each centroid's gradient being the sum of the
  gradients of the weights that share it (Deep Compression's centroid fine-tuning), and the
  weights are rewritten from it, so a layer keeps at most k distinct values;
- quantized layers: a float shadow weight is trained through the straight-through estimator
  and re-quantized (same bits) at every step, so the model always runs on its integers.

Biases, BatchNorm and untouched layers train normally. Progress and cancellation are
checked after every batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from compression.data import Dataset
from compression.encoding import QuantizedWeights, SharedWeights
from compression.evaluate import top1_accuracy
from compression.progress import Monitor
from compression.quantization import quantize_weight
from compression.training import fit
from jobspec import FineTune

if TYPE_CHECKING:
    from compression.steps import WorkingModel


def finetune(
    working: WorkingModel, data: Dataset, step: FineTune, monitor: Monitor, seed: int
) -> dict[str, Any]:
    module, runtime = working.module, working.runtime
    runtime.place(module)
    # codebooks, indices and integer codes live beside the weights while training
    working.encodings = {name: e.to(runtime.device) for name, e in working.encodings.items()}
    codebooks = {
        name: torch.nn.Parameter(encoding.codebook.clone())
        for name, encoding in working.encodings.items()
        if isinstance(encoding, SharedWeights)
    }
    shadows = {
        name: torch.nn.Parameter(working.layers[name].weight.detach().clone())
        for name, encoding in working.encodings.items()
        if isinstance(encoding, QuantizedWeights)
    }
    encoded_ids = {id(working.layers[name].weight) for name in working.encodings}
    trained = [p for p in module.parameters() if id(p) not in encoded_ids and p.requires_grad]
    before = top1_accuracy(module, data, runtime=runtime)
    fit(
        module, data, epochs=step.epochs, lr=step.lr, batch_size=step.batch_size, seed=seed,
        monitor=monitor, parameters=[*trained, *codebooks.values(), *shadows.values()],
        after_backward=lambda: _route_gradients(working, codebooks, shadows),
        after_step=lambda: _restore_constraints(working, codebooks, shadows), runtime=runtime,
    )  # fmt: skip
    working.encodings = {name: e.to("cpu") for name, e in working.encodings.items()}
    return {"epochs": step.epochs, "train_accuracy_before": before,
            "train_accuracy_after": top1_accuracy(module, data, runtime=runtime)}  # fmt: skip


def _route_gradients(
    working: WorkingModel,
    codebooks: dict[str, torch.nn.Parameter],
    shadows: dict[str, torch.nn.Parameter],
) -> None:
    """Move each constrained weight's gradient to what is actually trained."""
    for name, layer in working.layers.items():
        grad = layer.weight.grad
        if grad is None:
            continue
        mask = working.masks.get(name)
        if mask is not None:
            grad = grad * mask
        if name in codebooks:
            indices = working.encodings[name].indices.flatten()
            codebook_grad = torch.zeros_like(codebooks[name])
            codebooks[name].grad = codebook_grad.index_add_(0, indices, grad.flatten())
        elif name in shadows:
            shadows[name].grad = grad.clone()  # straight-through estimator
        else:
            layer.weight.grad = grad
        if name in codebooks or name in shadows:
            layer.weight.grad = None


@torch.no_grad()
def _restore_constraints(
    working: WorkingModel,
    codebooks: dict[str, torch.nn.Parameter],
    shadows: dict[str, torch.nn.Parameter],
) -> None:
    for name, codebook in codebooks.items():
        shared = SharedWeights(codebook.detach().clone(), working.encodings[name].indices)
        working.encodings[name] = shared
        working.set_weight(name, shared.dequantize())
    for name, shadow in shadows.items():
        quantized = quantize_weight(shadow.detach(), working.encodings[name].bits)
        working.encodings[name] = quantized
        working.set_weight(name, quantized.dequantize())
    for name, mask in working.masks.items():
        if name not in working.encodings:
            working.layers[name].weight.mul_(mask)
