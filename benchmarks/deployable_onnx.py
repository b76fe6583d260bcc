"""What a user deploys: ONNX sizes against the packed file, and speed in onnxruntime.

For each pipeline: float32 ONNX bytes, the delivered ``model.onnx`` (compression kept in
standard ONNX), the packed ``.xaic`` (entropy-coded, and plain: every section raw), the
theoretical size (kept weights x their bits, plus float32 codebooks, scales and the other
tensors; no positions, no container), top-1 in torch and in onnxruntime, and onnxruntime
latency of float32 vs delivered vs int8 (``int8_runtime``), each pair timed alternately.

Pipelines:
- the digits CNN pipelines of ``sharing_and_precision`` (8x8 digits, small_cnn);
- LeNet-5 of Deep Compression's shape (conv 20, conv 50, fc 500, fc 10; 431K parameters) on
  digits upsampled to 28x28, pruned per layer, shared with k = 16 and fine-tuned (goal: 50x
  at <= 0.5 point; Deep Compression reports 39x on MNIST);
- ResNet-20 (CIFAR shape, 3 x 32 x 32) on digits upsampled, for int8 speed: a model whose
  convolutions, not per-call overhead, set the latency.

Run: ``python -m benchmarks.deployable_onnx`` (``--quick`` for one small pipeline,
``--repeats`` for fewer timed runs). The results are written after every pipeline.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

from benchmarks.common import digits_splits, markdown_table, train, write_results
from benchmarks.sharing_and_precision import PIPELINES as DIGITS_PIPELINES
from compression import Spec, compress
from compression.data import Dataset, split
from compression.deploy.integer_onnx import integer_onnx
from compression.deploy.ort_measure import (
    all_threads,
    compare_ort_latency,
    ort_accuracy,
    session,
)
from compression.encoding import QuantizedWeights, SharedWeights
from compression.io import LoadedModel
from compression.packed import save_packed
from compression.training import fit

FAST = {"attribution": {"samples": 256}, "evaluation": {"latency_repeats": 20}}
INT8 = {"type": "int8_runtime", "calibration_samples": 256}
REPEATS = 30


class LeNet5DeepCompression(nn.Module):
    """Caffe's LeNet as Deep Compression prunes it: 20 and 50 5x5 filters, 500 hidden units."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 20, 5)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(20, 50, 5)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(800, 500)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(500, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


LENET_STEPS = [
    {"type": "prune_weights", "sparsity": 0.97, "layers": ["fc1"]},
    {"type": "prune_weights", "sparsity": 0.9, "layers": ["conv2"], "layer_types": ["conv"]},
    {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc2"]},
    {"type": "prune_weights", "sparsity": 0.5, "layers": ["conv1"], "layer_types": ["conv"]},
    {"type": "finetune", "epochs": 8, "lr": 1e-3},
    {"type": "share_weights", "clusters": 16},
    {"type": "finetune", "epochs": 4, "lr": 5e-4},
]
RESNET_STEPS = [
    {"type": "prune_filters", "ratio": 0.25},
    {"type": "quantize_mixed", "average_bits": 8, "candidate_bits": [8]},
    {"type": "finetune", "epochs": 2, "lr": 1e-3},
]


def upsampled_digits(size: int, channels: int, seed: int) -> tuple[Dataset, Dataset]:
    """sklearn digits resized to ``size`` x ``size`` (bilinear), repeated over ``channels``."""
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    x = x.repeat(1, channels, 1, 1).contiguous()
    data = Dataset(x, torch.tensor(bunch.target), tuple(str(i) for i in range(10)))
    return split(data, 0.6, seed)


def theoretical_bytes(module: nn.Module, encodings: dict, masks: dict) -> float:
    """Kept weights at their bit width plus every other number as float32, in bytes."""
    bits = 0
    coded = set()
    for name, layer in module.named_modules():
        if name not in encodings and name not in masks:
            continue
        coded.add(f"{name}.weight")
        weight = layer.weight
        kept = int(masks[name].sum()) if name in masks else weight.numel()
        encoding = encodings.get(name)
        if isinstance(encoding, SharedWeights):
            bits += kept * encoding.index_bits + 32 * encoding.codebook.numel()
        elif isinstance(encoding, QuantizedWeights):
            bits += kept * encoding.bits + 32 * encoding.scales.numel()
        else:
            bits += 32 * kept
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if name not in coded and tensor.is_floating_point():
            bits += 32 * tensor.numel()
    return bits / 8


def _latencies(folder: Path, input_shape: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """fp32 vs delivered and fp32 vs int8, alternately timed, batch 1 and 32, 1 and all
    threads: medians and p10/p90 per file."""
    rows = {}
    for batch in (1, 32):
        for threads in sorted({1, all_threads()}):
            fp32 = session(folder / "model.fp32.onnx", threads)
            pairs = {
                name: compare_ort_latency(
                    fp32, session(folder / name, threads), input_shape, batch, threads, repeats
                )
                for name in ("model.onnx", "model.int8.onnx")
            }
            setting = f"batch {batch}, {threads} thread{'s' if threads > 1 else ''}"
            rows[setting] = {name: pair.as_dict() for name, pair in pairs.items()}
    return rows


def run_pipeline(
    label: str,
    model: LoadedModel,
    train_set: Dataset,
    test_set: Dataset,
    steps: list,
    repeats: int = REPEATS,
) -> dict[str, Any]:
    spec = Spec.model_validate({**FAST, "steps": [*steps, INT8]})
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        result = compress(
            model, train_set, spec, eval_data=test_set, packed_path=folder / "model.xaic",
            onnx_dir=folder,
        )  # fmt: skip
        module = result.model.module
        report = save_packed(
            module, result.model.example_input(), folder / "plain.xaic", result.encodings,
            result.masks, entropy=False,
        )  # fmt: skip
        fp32 = onnx.load(str(folder / "model.fp32.onnx"))
        dequantize, _ = integer_onnx(
            fp32, module, result.encodings, result.masks, "dequantize_linear"
        )
        onnx.save(dequantize, folder / "model.dq.onnx")
        threads = all_threads()
        dq = compare_ort_latency(
            session(folder / "model.onnx", threads), session(folder / "model.dq.onnx", threads),
            model.input_shape, 1, threads, repeats,
        ).as_dict()  # fmt: skip
        sizes = {path.name: path.stat().st_size for path in folder.iterdir()}
        metrics = result.metrics
        entry = {
            "label": label,
            "accuracy_before": metrics["before"]["accuracy"],
            "accuracy_after": metrics["after"]["accuracy"],
            "ort_accuracy": ort_accuracy(session(folder / "model.onnx", threads), test_set, 256),
            "int8": metrics["int8_runtime"],
            "fp32_bytes": metrics["before"]["fp32_bytes"],
            "sizes": sizes,
            "plain_xaic": report.total_bytes,
            "theoretical_bytes": theoretical_bytes(module, result.encodings, result.masks),
            "onnx_layers": metrics["onnx"]["layers"],
            "latency": _latencies(folder, model.input_shape, repeats),
            "dequantize_linear_vs_cast": dq,
        }
    print(f"{label}: done", flush=True)
    return entry


def _ms(pair: dict, side: str) -> str:
    part = pair[side]
    return f"{part['median_ms']:.2f} ({part['p10_ms']:.2f}-{part['p90_ms']:.2f})"


def tables(entries: list[dict[str, Any]]) -> dict[str, str]:
    size_rows, speed_rows, int8_rows = [], [], []
    for e in entries:
        s = e["sizes"]
        size_rows.append([
            e["label"], s["model.fp32.onnx"], s["model.onnx"], s["model.xaic"], e["plain_xaic"],
            f"{e['theoretical_bytes']:.0f}", f"{s['model.onnx'] / s['model.xaic']:.2f}",
            f"{s['model.onnx'] / e['plain_xaic']:.2f}", f"{e['fp32_bytes'] / s['model.xaic']:.1f}x",
            f"{100 * e['accuracy_before']:.1f} -> {100 * e['accuracy_after']:.1f}",
            f"{100 * e['ort_accuracy']:.1f}",
        ])  # fmt: skip
        for setting, row in e["latency"].items():
            speed_rows.append([
                e["label"], setting,
                _ms(row["model.onnx"], "before"), _ms(row["model.onnx"], "after"),
                _ms(row["model.int8.onnx"], "after"),
                _ratio(row["model.int8.onnx"]),
            ])  # fmt: skip
        i = e["int8"]
        dq = e["dequantize_linear_vs_cast"]
        int8_rows.append([
            e["label"], f"{100 * i['accuracy_fp32']:.1f}", f"{100 * i['accuracy_int8']:.1f}",
            f"{100 * i['accuracy_drop']:+.1f}", s["model.int8.onnx"],
            f"{dq['after']['median_ms'] / dq['before']['median_ms']:.1f}x",
        ])  # fmt: skip
    return {
        "Sizes (bytes) and top-1 (%)": markdown_table(
            [
                "pipeline",
                "fp32 ONNX",
                "model.onnx",
                ".xaic",
                ".xaic plain",
                "theoretical",
                "onnx / xaic",
                "onnx / plain",
                "xaic ratio",
                "top-1 torch before -> after",
                "top-1 onnxruntime (model.onnx)",
            ],
            size_rows,
        ),
        "onnxruntime latency, ms: median (p10-p90); fp32 vs delivered vs int8": markdown_table(
            [
                "pipeline",
                "setting",
                "model.fp32.onnx",
                "model.onnx",
                "model.int8.onnx",
                "int8 speed-up",
            ],
            speed_rows,
        ),
        "int8 runtime: top-1 in onnxruntime (%), and the DequantizeLinear form": markdown_table(
            [
                "pipeline",
                "fp32",
                "int8",
                "change",
                "int8 bytes",
                "DequantizeLinear form / Cast form latency, batch 1",
            ],
            int8_rows,
        ),
    }


def _ratio(pair: dict) -> str:
    ratio = pair["before"]["median_ms"] / pair["after"]["median_ms"]
    return f"{ratio:.2f}x" + ("" if pair["reduction"] is not None else " (spreads overlap)")


def _pipelines(quick: bool) -> Iterator[tuple[str, LoadedModel, Dataset, Dataset, list]]:
    """(label, model, train, test, steps), the goal-bearing ones first (the first digits
    pipeline, LeNet-5, ResNet-20), then the other digits pipelines."""
    digits = list(DIGITS_PIPELINES.items())
    train_set, test_set = digits_splits(0)
    model = train("small_cnn", {}, train_set, 0)
    label, steps = digits[0]
    yield f"digits CNN: {label}", model, train_set, test_set, steps
    if quick:
        return
    lenet_train, lenet_test = upsampled_digits(28, 1, 0)
    torch.manual_seed(0)
    lenet = LeNet5DeepCompression()
    fit(lenet, lenet_train, epochs=15, lr=1e-3, seed=0)
    yield (
        "LeNet-5 (431K) 28x28 digits: prune 97/90/80/50%, share k=16, fine-tune",
        LoadedModel(lenet, (1, 28, 28), 10, "benchmark:lenet5-deep-compression"),
        lenet_train, lenet_test, LENET_STEPS,
    )  # fmt: skip
    resnet_train, resnet_test = upsampled_digits(32, 3, 0)
    resnet = train("resnet20", {}, resnet_train, 0, epochs=6, lr=1e-3)
    label = "ResNet-20 3x32x32 digits: prune 25% filters, 8-bit, fine-tune"
    yield label, resnet, resnet_train, resnet_test, RESNET_STEPS
    for label, steps in digits[1:]:
        yield f"digits CNN: {label}", model, train_set, test_set, steps


def _write(entries: list[dict[str, Any]], planned: int, repeats: int) -> Path:
    medians = {
        "onnx_over_xaic": statistics.median(
            e["sizes"]["model.onnx"] / e["sizes"]["model.xaic"] for e in entries
        ),
        "onnx_over_plain": statistics.median(
            e["sizes"]["model.onnx"] / e["plain_xaic"] for e in entries
        ),
    }
    done = "" if len(entries) == planned else f" ({len(entries)} of {planned} pipelines so far)"
    return write_results(
        "deployable_onnx",
        f"Deployable ONNX: sizes against the packed file, speed in onnxruntime{done}",
        tables(entries),
        {"entries": entries, "medians": medians, "repeats": repeats},
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one digits pipeline only")
    parser.add_argument(
        "--repeats", type=int, default=REPEATS, help="timed runs per model and setting"
    )
    args = parser.parse_args()
    torch.manual_seed(0)
    planned = 1 if args.quick else 2 + len(DIGITS_PIPELINES)
    entries: list[dict[str, Any]] = []
    for label, model, train_set, test_set, steps in _pipelines(args.quick):
        entries.append(run_pipeline(label, model, train_set, test_set, steps, args.repeats))
        path = _write(entries, planned, args.repeats)  # a slow machine keeps what it measured
    print(path.read_text())


if __name__ == "__main__":
    main()
