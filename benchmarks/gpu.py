"""GPU benchmark: all-layer DeepLIFT throughput against a training step, and one whole job.

1. ResNet-18 and ResNet-50 at 224x224 (random weights, synthetic images, 10 classes): images
   per second of the engine's all-layer DeepLIFT relevance (``compression.attribution.attribute``,
   reference + attribution pass per batch, every conv/linear layer, as ``prune_filters``
   scores) against a training step of the same model and batch (forward + backward + Adam),
   each with its peak GPU memory. Goal: relevance at >= 0.67x the training step's images/s.
2. One whole job end to end on ResNet-18: prune_filters + quantize_mixed + 1 epoch of
   fine-tuning on 2,000 synthetic images, through ``compress()`` with the ONNX deliverables,
   wall time per stage and peak GPU memory.

Both read batches from host memory, as the engine does. On a bare CUDA machine:

    make install && .venv/bin/python -m benchmarks.gpu        # < 8 min on one GPU

writes ``benchmarks/results/gpu.md``. ``--device cpu --quick`` is a smoke check of the same
code (tiny widths and images, a few batches; it writes nothing unless ``--out`` is given).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from benchmarks.common import markdown_table, write_results
from compression import Spec, compress
from compression.attribution.engine import attribute
from compression.data import Dataset
from compression.io import LoadedModel
from compression.layers import weighted_layers
from compression.runtime import Runtime
from compression.zoo.imagenet import ImageNetArgs, ResNet18, _scaled

GOAL = 0.67
"""All-layer relevance should reach this share of the training step's images/s."""


# ---- ResNet-50: torchvision's layout, from the zoo's conventions (the zoo has ResNet-18) ----


class Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int) -> None:
        super().__init__()
        cout = mid * 4
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
            )

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class ResNet50(nn.Module):
    """torchvision's resnet50 (v1.5: stride in the 3x3 conv), 25.6M parameters at width 1."""

    def __init__(self, args: ImageNetArgs) -> None:
        super().__init__()
        mids = [_scaled(c, args.width) for c in (64, 128, 256, 512)]
        stem = mids[0]
        self.conv1 = nn.Conv2d(3, stem, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = stem
        for index, (mid, blocks) in enumerate(zip(mids, (3, 4, 6, 3), strict=True)):
            stride = 1 if index == 0 else 2
            layer = [Bottleneck(cin, mid, stride)]
            layer += [Bottleneck(mid * 4, mid, 1) for _ in range(blocks - 1)]
            setattr(self, f"layer{index + 1}", nn.Sequential(*layer))
            cin = mid * 4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, args.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


MODELS: dict[str, Callable[[ImageNetArgs], nn.Module]] = {
    "resnet18": ResNet18,
    "resnet50": ResNet50,
}


@dataclass(frozen=True)
class Plan:
    """How big everything is: the full run, or the quick smoke check."""

    image_size: int
    width: float
    batch: int
    timed_batches: int
    job_images: int
    latency_repeats: int

    @classmethod
    def for_run(cls, quick: bool, batch: int | None) -> Plan:
        if quick:
            return cls(32, 0.125, batch or 4, 2, 48, 3)
        return cls(224, 1.0, batch or 64, 10, 2000, 20)


def synthetic(count: int, size: int, seed: int, classes: int = 10) -> Dataset:
    """Random images in [0, 1) and random labels (uint8 pixels, normalized per batch)."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, classes, (count,), generator=generator)
    return Dataset(x, y, tuple(str(i) for i in range(classes)))


def _peak(runtime: Runtime) -> int | None:
    return torch.cuda.max_memory_allocated(runtime.device) if runtime.is_cuda else None


def _reset_peak(runtime: Runtime) -> None:
    runtime.release()
    if runtime.is_cuda:
        torch.cuda.reset_peak_memory_stats(runtime.device)


def training_throughput(model: nn.Module, data: Dataset, plan: Plan, runtime: Runtime) -> dict:
    """Images/s of forward + backward + Adam step, batches read from host memory."""
    runtime.place(model).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    batches = list(data.batches(plan.batch))

    def step(x: Tensor, y: Tensor) -> None:
        optimizer.zero_grad(set_to_none=True)
        with runtime.autocast():
            logits = model(runtime.put(x))
        F.cross_entropy(logits.float(), runtime.put(y)).backward()
        optimizer.step()

    for x, y in batches[:2]:  # warm-up: kernel choice, optimizer state, allocator
        step(x, y)
    runtime.synchronize()
    _reset_peak(runtime)
    start = time.perf_counter()
    for x, y in batches:
        step(x, y)
    runtime.synchronize()
    seconds = time.perf_counter() - start
    model.eval()
    return {"images_per_s": data.num_samples / seconds, "seconds": seconds, "peak": _peak(runtime)}


def relevance_throughput(model: nn.Module, data: Dataset, plan: Plan, runtime: Runtime) -> dict:
    """Images/s of all-layer DeepLIFT relevance (per-channel, as prune_filters scores)."""
    runtime.place(model).eval()
    example = runtime.put(data.samples(slice(0, 2)))
    layers = weighted_layers(model, example)

    def run(part: Dataset) -> None:
        attribute(
            model, layers, part, batch_size=plan.batch, channel_scores=("relevance",),
            runtime=runtime,
        )  # fmt: skip

    run(data.subset(torch.arange(min(2 * plan.batch, data.num_samples))))  # warm-up
    runtime.synchronize()
    _reset_peak(runtime)
    start = time.perf_counter()
    run(data)
    runtime.synchronize()
    seconds = time.perf_counter() - start
    return {
        "images_per_s": data.num_samples / seconds,
        "seconds": seconds,
        "peak": _peak(runtime),
        "layers": len(layers),
    }


def throughput_table(plan: Plan, runtime: Runtime) -> tuple[str, list[dict[str, Any]]]:
    rows, raw = [], []
    for name, build in MODELS.items():
        torch.manual_seed(0)
        args = ImageNetArgs(image_size=plan.image_size, width=plan.width)
        model = build(args)
        data = synthetic(plan.batch * plan.timed_batches, plan.image_size, seed=1)
        train = training_throughput(model, data, plan, runtime)
        relevance = relevance_throughput(model, data, plan, runtime)
        ratio = relevance["images_per_s"] / train["images_per_s"]
        parameters = sum(p.numel() for p in model.parameters())
        raw.append({"model": name, "parameters": parameters, "train": train,
                    "relevance": relevance, "ratio": ratio})  # fmt: skip
        rows.append([
            name, f"{parameters / 1e6:.1f}M", relevance["layers"], plan.batch,
            f"{train['images_per_s']:.1f}", f"{relevance['images_per_s']:.1f}", f"{ratio:.2f}x",
            "yes" if ratio >= GOAL else "no", _gib(train["peak"]), _gib(relevance["peak"]),
        ])  # fmt: skip
        del model
        runtime.release()
    header = [
        "model", "params", "layers", "batch", "train step img/s", "all-layer DeepLIFT img/s",
        "ratio", f">= {GOAL}x", "train peak GiB", "DeepLIFT peak GiB",
    ]  # fmt: skip
    return markdown_table(header, rows), raw


def whole_job(plan: Plan, runtime: Runtime, out: Path) -> tuple[str, dict[str, Any]]:
    """prune_filters + quantize_mixed + 1 epoch fine-tune on ResNet-18, end to end."""
    torch.manual_seed(0)
    args = ImageNetArgs(image_size=plan.image_size, width=plan.width)
    model = LoadedModel(ResNet18(args), args.input_shape(), 10, "zoo:resnet18")
    data = synthetic(plan.job_images, plan.image_size, seed=2)
    spec = Spec.model_validate(
        {
            "steps": [
                {"type": "prune_filters", "ratio": 0.3},
                {"type": "quantize_mixed", "average_bits": 6},
                {"type": "finetune", "epochs": 1, "batch_size": plan.batch},
            ],
            "attribution": {"batch_size": plan.batch},
            "evaluation": {"latency_repeats": plan.latency_repeats},
        }
    )
    _reset_peak(runtime)
    runtime.batch_limits.clear()  # the job finds its own batch sizes
    start = time.perf_counter()
    result = compress(model, data, spec, runtime=runtime, onnx_dir=out, packed_path=out / "m.xaic")
    seconds = time.perf_counter() - start
    metrics = result.metrics
    stages = ", ".join(f"{k} {v:.1f}" for k, v in metrics["stage_seconds"].items())
    gpu = metrics.get("gpu_latency")
    rows = [
        ["images (train / calibration / evaluation)",
         f"{metrics['data']['training_samples']} / {metrics['data']['calibration_samples']}"
         f" / {metrics['data']['evaluation_samples']}"],
        ["wall time, whole job", f"{seconds:.1f} s"],
        ["seconds per stage", stages],
        ["peak GPU memory", _gib(_peak(runtime))],
        ["parameters before -> after",
         f"{metrics['before']['parameters']:,} -> {metrics['after']['parameters']:,}"],
        ["size reduction (fp32 / packed)", f"{metrics['reduction']['size']:.1f}x"],
        ["CPU latency before -> after (batch 1, median)",
         f"{metrics['latency']['before']['median_ms']:.2f} -> "
         f"{metrics['latency']['after']['median_ms']:.2f} ms"],
        ["GPU latency before -> after (batch 1, median, synchronized)",
         "-" if gpu is None else f"{gpu['before']['median_ms']:.2f} -> "
         f"{gpu['after']['median_ms']:.2f} ms"],
        ["batch sizes halved", str(runtime.batch_limits or "none")],
    ]  # fmt: skip
    return markdown_table(["", "value"], rows), {"seconds": seconds, "metrics": metrics}


def _gib(value: int | None) -> str:
    return "-" if value is None else f"{value / 1024**3:.2f}"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="tiny smoke check of the code")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for both sides")
    parser.add_argument("--out", type=Path, default=None, help="results name (default gpu)")
    args = parser.parse_args(argv)
    plan = Plan.for_run(args.quick, args.batch)
    runtime = Runtime.from_setting(args.device, bf16_autocast=args.bf16)
    torch.backends.cudnn.benchmark = True  # this script's process only: fixed input shapes
    started = time.perf_counter()
    with runtime.activated():
        described = runtime.describe()
        throughput, raw_throughput = throughput_table(plan, runtime)
        with tempfile.TemporaryDirectory() as scratch:
            job, raw_job = whole_job(plan, runtime, Path(scratch))
    elapsed = time.perf_counter() - started
    where = described.get("gpu", "CPU") + f" ({described['device']})"
    sections = {
        f"All-layer DeepLIFT vs training step, {plan.image_size}x{plan.image_size}": throughput
        + f"\n\nOn {where}; random weights, synthetic images read from host memory; "
        f"{plan.timed_batches} timed batches after warm-up; bf16 autocast "
        f"{'on' if args.bf16 else 'off'}. Goal: DeepLIFT >= {GOAL}x the training step.",
        "One whole job: ResNet-18, prune_filters 0.3 + quantize_mixed 6 bits + 1 epoch": job
        + "\n\nSynthetic data: accuracies are chance and not reported.",
    }
    raw = {"runtime": described, "plan": plan.__dict__, "throughput": raw_throughput,
           "job": raw_job, "seconds": elapsed}  # fmt: skip
    name = args.out.name if args.out is not None else (None if args.quick else "gpu")
    text = "\n\n".join(f"## {title}\n\n{body}" for title, body in sections.items())
    if name is not None:
        path = write_results(name, "GPU: DeepLIFT throughput and a whole job", sections, raw)
        text = path.read_text()
    print(text)
    print(f"\nbenchmark took {elapsed:.0f} s")
    return text


if __name__ == "__main__":
    main()
