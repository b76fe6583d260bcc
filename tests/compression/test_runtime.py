"""The engine's Runtime: device settings, what activation changes and restores, batch sizes
that halve on out-of-memory, and a whole job through every step with an explicit CPU runtime.

Out-of-memory is injected by a tiny wrapper module that raises torch's own
``OutOfMemoryError`` for batches above a limit, as a too-small GPU would; everything else
(the model, the data, the passes) is real.
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
from torch import nn

from compression import Spec, compress
from compression.activation_size import BACKWARD_FACTOR, leaf_output_bytes
from compression.attribution.engine import attribute
from compression.attribution.normalize import normalize
from compression.batch_fit import with_fitting_batch
from compression.criteria import ScoringOptions, get_criterion
from compression.data import Dataset
from compression.evaluate import top1_accuracy
from compression.io import LoadedModel
from compression.layers import weighted_layers
from compression.progress import Monitor
from compression.runtime import Runtime, resolve_device
from compression.training import fit
from tests.conftest import ROOT

CUDA = torch.cuda.is_available()


class FitsUpTo:
    """A forward pre-hook on ``layer``: batches larger than ``limit`` fail there as on a GPU
    that is too small (a hook, so it survives the FX rewrite attribution does)."""

    def __init__(self, layer: nn.Module, limit: int) -> None:
        self.limit = limit
        self.sizes: list[int] = []
        self.handle = layer.register_forward_pre_hook(self._check)

    def _check(self, module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        self.sizes.append(inputs[0].shape[0])
        if inputs[0].shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate {inputs[0].shape[0]} samples"
            )

    def remove(self) -> None:
        self.handle.remove()


def _events(log: list[tuple[str, dict]]) -> Monitor:
    return Monitor(events=lambda kind, details: log.append((kind, details)))


# ------------------------------------------------------------------------------ settings


@pytest.mark.parametrize("setting", ["cpu", "auto"])
def test_cpu_and_auto_resolve_to_a_real_device(setting: str) -> None:
    expected = "cuda" if setting == "auto" and CUDA else "cpu"
    assert resolve_device(setting).type == expected


@pytest.mark.parametrize("setting", ["gpu", "CPU", "cuda:", "cuda:x", "cuda:-1", " cpu", ""])
def test_an_unknown_device_setting_is_refused(setting: str) -> None:
    with pytest.raises(ValueError, match="auto, cpu, cuda or cuda:N"):
        resolve_device(setting)


@pytest.mark.skipif(CUDA, reason="checks the refusal on a machine without CUDA")
@pytest.mark.parametrize("setting", ["cuda", "cuda:0", "cuda:3"])
def test_asking_for_cuda_without_cuda_is_refused_not_run_on_the_cpu(setting: str) -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        resolve_device(setting)


def test_runtime_refuses_impossible_limits() -> None:
    with pytest.raises(ValueError, match="threads"):
        Runtime(threads=0)
    with pytest.raises(ValueError, match="gpu_memory_fraction"):
        Runtime(gpu_memory_fraction=1.5)


def test_activation_sets_threads_for_the_block_only() -> None:
    outside = torch.get_num_threads()
    runtime = Runtime.from_setting("cpu", threads=1 if outside != 1 else 2)
    with runtime.activated():
        assert torch.get_num_threads() == runtime.threads
        assert runtime.describe() == {
            "device": "cpu",
            "threads": runtime.threads,
            "bf16_autocast": False,
        }
    assert torch.get_num_threads() == outside


# ------------------------------------------------------------------------- batch fitting


def test_halving_starts_at_the_request_and_stops_where_the_batch_fits() -> None:
    runtime, log = Runtime(), []
    tried: list[int] = []

    def work(size: int) -> int:
        tried.append(size)
        if size > 20:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return size

    assert with_fitting_batch(work, 100, "attribution", runtime, _events(log)) == 12
    assert tried == [100, 50, 25, 12]
    assert [details["from"] for _, details in log] == [100, 50, 25]
    assert [details["to"] for _, details in log] == [50, 25, 12]
    assert {kind for kind, _ in log} == {"batch_size_reduced"}
    assert log[0][1]["reason"] == "CUDA out of memory. Tried to allocate 2.00 GiB"
    assert log[0][1]["work"] == "attribution" and log[0][1]["device"] == "cpu"
    # the next pass of the same kind starts where the last one fitted: no new halving
    tried.clear()
    assert with_fitting_batch(work, 100, "attribution", runtime, _events(log)) == 12
    assert tried == [12] and len(log) == 3
    # other errors, and out-of-memory at batch size 1, are not swallowed
    with pytest.raises(torch.cuda.OutOfMemoryError):
        with_fitting_batch(lambda size: work(size * 100), 8, "evaluation", runtime)
    with pytest.raises(KeyError):
        with_fitting_batch(lambda size: {}[size], 8, "taylor", runtime)


def test_evaluation_halves_its_batch_and_counts_every_sample(digits: Dataset) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    expected = top1_accuracy(model, digits, batch_size=256)
    small, log = FitsUpTo(model, 50), []

    accuracy = top1_accuracy(model, digits, 256, _events(log), Runtime())

    assert accuracy == expected
    assert [(d["from"], d["to"]) for _, d in log] == [(256, 128), (128, 64), (64, 32)]
    assert small.sizes[0] == 1  # the one-sample forward that sizes batches for the host
    assert small.sizes[1:4] == [256, 128, 64]
    assert max(small.sizes[4:]) == 32 and sum(small.sizes[4:]) == digits.num_samples


@pytest.fixture
def batch_of_96(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> tuple[Dataset, nn.Module, dict[str, nn.Module]]:
    """96 digits, a copy of the trained CNN and its layers: one pass, in batches or whole."""
    model = copy.deepcopy(trained_digits_cnn.module)
    layers = weighted_layers(model, trained_digits_cnn.example_input())
    return digits.subset(torch.arange(96)), model, layers


def test_attribution_after_halving_equals_the_full_batch_result(
    batch_of_96: tuple[Dataset, nn.Module, dict[str, nn.Module]],
) -> None:
    data, model, layers = batch_of_96
    for name in ("deeplift", "taylor"):
        full = get_criterion(name, ScoringOptions(batch_size=96)).score(model, layers, data)
        log: list[tuple[str, dict]] = []
        runtime = Runtime()
        options = ScoringOptions(batch_size=96, runtime=runtime)
        limited = FitsUpTo(layers["conv1"], 40)
        scores = get_criterion(name, options).score(model, layers, data, _events(log))
        limited.remove()
        assert [(d["from"], d["to"]) for _, d in log] == [(96, 48), (48, 24)], name
        assert runtime.batch_limits == {"attribution" if name == "deeplift" else name: 24}
        for layer in layers:  # per-sample sums: the batch size does not matter
            torch.testing.assert_close(scores[layer].channels, full[layer].channels)
            if name == "deeplift":  # Taylor's per-weight |w g| takes g per batch, by definition
                torch.testing.assert_close(scores[layer].weights, full[layer].weights)


def test_a_training_step_split_into_micro_batches_has_the_same_gradient(
    digits: Dataset,
) -> None:
    torch.manual_seed(0)
    start = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    whole = fit(copy.deepcopy(start), digits, epochs=1, lr=1e-3, batch_size=128, seed=1)
    log: list[tuple[str, dict]] = []
    model = copy.deepcopy(start)
    split = FitsUpTo(model, 40)
    fit(
        model, digits, epochs=1, lr=1e-3, batch_size=128, seed=1, monitor=_events(log),
        runtime=Runtime(),  # its own: the fitted size is remembered per runtime (per job)
    )  # fmt: skip

    assert [(d["from"], d["to"]) for _, d in log] == [(128, 64), (64, 32)]
    assert max(split.sizes[2:]) == 32  # every later step ran in micro-batches of 32
    for ours, theirs in zip(model.parameters(), whole.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4)


# ------------------------------------------------------------------------------ one job


ALL_STEPS = {
    "steps": [
        {"type": "prune_filters", "ratio": 0.25, "criterion": "deeplift"},
        {"type": "prune_weights", "sparsity": 0.8, "layers": ["fc1"], "criterion": "taylor"},
        {"type": "share_weights", "clusters": 8, "layers": ["fc1", "fc2"]},
        {"type": "quantize_mixed", "average_bits": 5, "layers": ["conv1", "conv2"]},
        {"type": "finetune", "epochs": 1, "lr": 1e-3},
    ],
    "attribution": {"samples": 128, "batch_size": 64},
    "evaluation": {"latency_repeats": 3},
}


def test_a_job_through_every_step_on_an_explicit_cpu_runtime(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    runtime = Runtime.from_setting("cpu", threads=1)
    events: list[tuple[str, dict]] = []
    with runtime.activated():
        result = compress(
            trained_digits_cnn, digits, Spec.model_validate(ALL_STEPS), runtime=runtime,
            events=lambda kind, details: events.append((kind, details)),
        )  # fmt: skip
    metrics = result.metrics
    assert metrics["runtime"] == {"device": "cpu", "threads": 1, "bf16_autocast": False}
    assert metrics["latency"]["device"] == "cpu" and metrics["latency"]["threads"] == 1
    assert "gpu_latency" not in metrics and "gpu_latency_ms" not in metrics["after"]
    assert events == []  # everything fitted: nothing to say
    assert [step["type"] for step in metrics["steps"]] == [s["type"] for s in ALL_STEPS["steps"]]
    assert all(p.device.type == "cpu" for p in result.model.module.parameters())
    assert metrics["after"]["accuracy"] > 0.5


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_the_same_job_on_the_gpu_agrees_with_the_cpu(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    spec = Spec.model_validate(ALL_STEPS)
    cpu = compress(trained_digits_cnn, digits, spec, runtime=Runtime.from_setting("cpu"))
    gpu_runtime = Runtime.from_setting("cuda")
    with gpu_runtime.activated():
        gpu = compress(trained_digits_cnn, digits, spec, runtime=gpu_runtime)
    assert gpu.metrics["runtime"]["device"].startswith("cuda")
    assert gpu.metrics["runtime"]["gpu_peak_memory_bytes"] > 0
    assert gpu.metrics["gpu_latency"]["device"].startswith("cuda")
    assert gpu.metrics["latency"]["device"] == "cpu"
    assert all(p.device.type == "cpu" for p in gpu.model.module.parameters())
    first_cpu, first_gpu = cpu.scores[0], gpu.scores[0]
    for layer in first_cpu:
        torch.testing.assert_close(
            first_gpu[layer].channels, first_cpu[layer].channels, rtol=1e-3, atol=1e-5
        )
    assert abs(gpu.metrics["after"]["accuracy"] - cpu.metrics["after"]["accuracy"]) < 0.05


def test_bf16_autocast_is_an_option_close_to_float32_and_off_by_default() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3))
    data = Dataset(torch.rand(16, 1, 8, 8), torch.randint(0, 3, (16,)), ("a", "b", "c"))
    layers = {"conv": model[0], "fc": model[3]}
    exact = attribute(model, layers, data, per_weight=True)
    assert Runtime().bf16_autocast is False
    assert exact.completeness_error < 1e-5  # float32: DeepLIFT's sums hold
    rough = attribute(model, layers, data, per_weight=True, runtime=Runtime(bf16_autocast=True))
    assert rough.completeness_error > exact.completeness_error  # bfloat16 really was used
    for name in layers:
        scale = exact.layers[name].channel.abs().max()
        assert (rough.layers[name].channel - exact.layers[name].channel).abs().max() < 0.02 * scale


@pytest.mark.gpu
@pytest.mark.skipif(not CUDA, reason="needs a CUDA device")
def test_a_real_cuda_out_of_memory_halves_the_batch() -> None:
    """A memory fraction of ~150 MB makes a 2048-image batch of 64x64 activations fail for
    real; relevance still comes out, equal to the CPU's, and the halving is reported."""
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(32, 10),
    )  # fmt: skip
    data = Dataset(torch.rand(2048, 3, 64, 64), torch.randint(0, 10, (2048,)), tuple("0123456789"))
    layers = {"conv": model[0], "fc": model[4]}
    expected = attribute(copy.deepcopy(model), layers, data, batch_size=256)
    total = torch.cuda.get_device_properties(0).total_memory
    runtime = Runtime.from_setting("cuda", gpu_memory_fraction=150 * 1024**2 / total)
    log: list[tuple[str, dict]] = []
    with runtime.activated():
        result = attribute(
            model, layers, data, batch_size=2048, monitor=_events(log), runtime=runtime
        )
    assert log and log[0][1]["from"] == 2048 and "out of memory" in log[0][1]["reason"].lower()
    assert runtime.batch_limits["attribution"] < 2048
    for name in layers:
        torch.testing.assert_close(
            result.layers[name].channel, expected.layers[name].channel, rtol=1e-3, atol=1e-6
        )


# ------------------------------------------------------------------ host memory budget


def test_leaf_output_bytes_counts_every_leaf_output_of_one_sample() -> None:
    model = nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(128, 10)
    )
    # conv 2x8x8 = 128, relu 128, flatten 128, linear 10 floats
    assert leaf_output_bytes(model, torch.rand(1, 1, 8, 8)) == 4 * (128 + 128 + 128 + 10)


def test_a_cpu_pass_starts_at_the_batch_the_host_budget_allows(
    batch_of_96: tuple[Dataset, nn.Module, dict[str, nn.Module]],
) -> None:
    data, model, layers = batch_of_96
    per_sample = int(
        BACKWARD_FACTOR * leaf_output_bytes(normalize(model), data.samples(slice(0, 1)))
    )
    full = get_criterion("deeplift", ScoringOptions(batch_size=96)).score(model, layers, data)
    log: list[tuple[str, dict]] = []
    runtime = Runtime(host_batch_bytes=10 * per_sample + per_sample // 2)
    counted = FitsUpTo(layers["conv1"], 96)
    options = ScoringOptions(batch_size=96, runtime=runtime)
    scores = get_criterion("deeplift", options).score(model, layers, data, _events(log))
    counted.remove()
    assert [(d["from"], d["to"]) for _, d in log] == [(96, 10)]
    assert log[0][1]["reason"].startswith("host memory: about ")
    assert runtime.batch_limits == {}  # a budget, not a failure: the next pass sizes itself
    # the one-sample forward that sized them, then per batch the shared zero baseline's pass
    # and the attribution pass
    assert counted.sizes == [1, *[1, 10] * 9, 1, 6]
    for layer in layers:  # the same sums as one batch of 96
        torch.testing.assert_close(scores[layer].channels, full[layer].channels)
        torch.testing.assert_close(scores[layer].weights, full[layer].weights)
    assert top1_accuracy(model, data, 96, runtime=Runtime(host_batch_bytes=1)) == top1_accuracy(
        model, data, 96
    )  # batch 1 at the least


RETURNED = """
import os, torch
from compression import host_memory
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
if {setting}:
    assert host_memory.return_large_frees()
torch.empty(2 << 20, dtype=torch.uint8)  # freed at once: glibc raises its threshold to 2 MiB
blocks = [torch.ones(2 << 20, dtype=torch.uint8) for _ in range(100)]
held = rss()
keep = blocks[-1]  # the top of the heap stays in use, so it cannot shrink from the top
del blocks
print((held - rss()) >> 20)
"""


@pytest.mark.parametrize("setting", [False, True])
def test_large_frees_go_back_to_the_system_once_asked(setting: bool) -> None:
    """100 blocks of 2 MiB, all but the last freed: without the setting glibc keeps them in
    its heap (the threshold grew past 2 MiB on the first free); with it they are unmapped."""
    code = RETURNED.format(setting=setting)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    returned_mib = int(done.stdout.strip())
    assert returned_mib >= 190 if setting else returned_mib <= 10
