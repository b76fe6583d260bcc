"""WORKER_DEVICE and the other WORKER_* settings become the engine's Runtime."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from core.settings import Settings
from worker.resources import job_runtime


@pytest.mark.parametrize("value", ["auto", "cpu", "cuda", "cuda:0", "cuda:7"])
def test_worker_device_parses_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("WORKER_DEVICE", value)
    assert Settings().worker_device == value


def test_worker_device_defaults_to_auto() -> None:
    assert Settings().worker_device == "auto"


@pytest.mark.parametrize("value", ["gpu", "CUDA", "cuda:", "cuda:one", "cpu,cuda", "mps", ""])
def test_an_invalid_worker_device_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("WORKER_DEVICE", value)
    with pytest.raises(ValidationError, match="worker_device"):
        Settings()


@pytest.mark.parametrize("fraction", ["0", "1.5", "-0.1"])
def test_a_gpu_memory_fraction_outside_0_1_is_refused(
    monkeypatch: pytest.MonkeyPatch, fraction: str
) -> None:
    monkeypatch.setenv("WORKER_GPU_MEMORY_FRACTION", fraction)
    with pytest.raises(ValidationError, match="worker_gpu_memory_fraction"):
        Settings()


def test_the_worker_builds_its_runtime_from_the_settings() -> None:
    runtime = job_runtime(Settings(worker_device="cpu", worker_threads=2))
    assert runtime.device == torch.device("cpu")
    assert runtime.threads == 2 and runtime.bf16_autocast is False
    assert job_runtime(Settings(worker_device="cpu")).threads is None  # 0: torch's own choice
    auto = job_runtime(Settings(worker_device="auto", worker_bf16_autocast=True))
    assert auto.device.type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert auto.bf16_autocast is True


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_cuda_worker_on_a_machine_without_cuda_says_so() -> None:
    with pytest.raises(ValueError, match="no CUDA device"):
        job_runtime(Settings(worker_device="cuda"))
