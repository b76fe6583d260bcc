"""Where and how the engine computes: one object handed to every place that does work.

Attribution, Taylor scores, evaluation, fine-tuning, k-means, quantization error and latency
all take a :class:`Runtime` and put their model and batches on ``runtime.device``. No engine
module sets process-wide state for itself (thread count, GPU memory fraction): whoever runs a
job (the worker) builds one Runtime and enters :meth:`Runtime.activated` around the job, which
applies those settings, restores the thread count afterwards and hands cached GPU memory back
to the driver, so a worker that runs many jobs starts each one clean.

bf16 autocast is an option, off by default: with it the GPU runs matmuls and convolutions in
bfloat16 (faster, about 3 significant digits), and scores, accuracies and completeness errors
are then no longer comparable bit for bit with a float32 run.
"""

from __future__ import annotations

import gc
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from compression import host_memory

DEVICE_SETTING = re.compile(r"^(auto|cpu|cuda(:[0-9]+)?)$")
"""What a device setting may say: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``."""


def resolve_device(setting: str = "auto") -> torch.device:
    """The device a setting names; ``auto`` is the first CUDA device when there is one.

    A CUDA setting on a machine without CUDA (or naming a device it does not have) is refused
    rather than quietly run on the CPU: the operator asked for a GPU."""
    if not DEVICE_SETTING.match(setting):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {setting!r}")
    if setting == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    device = torch.device(setting)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {setting!r} asked for, but this machine has no CUDA device")
        count = torch.cuda.device_count()
        if (device.index or 0) >= count:
            raise ValueError(f"device {setting!r} asked for, but only {count} CUDA device(s)")
        if device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
    return device


HOST_BATCH_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Runtime:
    """The device, thread count, GPU memory limit and precision of one job's computations."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    threads: int | None = None
    """torch intra-op threads while the runtime is active; None leaves torch's choice."""
    gpu_memory_fraction: float | None = None
    """Share of the GPU's memory this process may allocate (CUDA only); None: all of it."""
    host_batch_bytes: int = HOST_BATCH_BYTES
    """Activation memory one batch of attribution or evaluation may take on the CPU: passes
    over large inputs use smaller batches (``compression.batch_fit``), so a job's peak memory
    is its models plus one such batch."""
    bf16_autocast: bool = False
    batch_limits: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    """The largest batch that fitted, per kind of work, once one had to be halved (so later
    passes of the same job start there instead of running out of memory again)."""

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads must be at least 1, got {self.threads}")
        fraction = self.gpu_memory_fraction
        if fraction is not None and not 0.0 < fraction <= 1.0:
            raise ValueError(f"gpu_memory_fraction must be in (0, 1], got {fraction}")

    @classmethod
    def from_setting(cls, device: str = "auto", **options: Any) -> Runtime:
        """A runtime for a device setting (``auto|cpu|cuda|cuda:N``); see :func:`resolve_device`."""
        return cls(resolve_device(device), **options)

    @property
    def is_cuda(self) -> bool:
        return self.device.type == "cuda"

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` on this runtime's device (itself when it is there already)."""
        return tensor.to(self.device, non_blocking=self.is_cuda)

    def place(self, module: nn.Module) -> nn.Module:
        """Move ``module`` (in place, as ``nn.Module.to`` does) to this runtime's device."""
        return module.to(self.device)

    def autocast(self) -> AbstractContextManager[Any]:
        """bf16 autocast for forward passes when asked for; otherwise exact float32."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16_autocast)

    def synchronize(self) -> None:
        """Wait for queued GPU work (timings must not end before the kernels do)."""
        if self.is_cuda:
            torch.cuda.synchronize(self.device)

    def release(self) -> None:
        """Collect cyclic garbage, free heap pages to the operating system and return cached
        GPU memory to the driver: after each step of a job and before its export (a step's
        cycles hold what it replaced), after a job, and after out-of-memory."""
        gc.collect()
        host_memory.trim()
        if self.is_cuda:
            torch.cuda.empty_cache()

    @contextmanager
    def activated(self) -> Iterator[Runtime]:
        """Apply thread count and GPU memory limit for the block and count its peak GPU
        memory from zero; restore the thread count and release GPU memory afterwards.

        Large host allocations are returned to the operating system when freed from here on
        (``host_memory.return_large_frees``; not undone: it only changes where large blocks
        come from, and a worker runs each job in a child of its own)."""
        host_memory.return_large_frees()
        threads = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        if self.is_cuda:
            torch.cuda.set_device(self.device)
            if self.gpu_memory_fraction is not None:
                torch.cuda.set_per_process_memory_fraction(self.gpu_memory_fraction, self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            yield self
        finally:
            torch.set_num_threads(threads)
            if self.is_cuda and self.gpu_memory_fraction is not None:
                torch.cuda.set_per_process_memory_fraction(1.0, self.device)
            self.release()

    def describe(self) -> dict[str, Any]:
        """What the job's metrics say about where it ran (GPU model and peak memory on CUDA)."""
        report: dict[str, Any] = {
            "device": str(self.device),
            "threads": torch.get_num_threads(),
            "bf16_autocast": self.bf16_autocast,
        }
        if self.is_cuda:
            properties = torch.cuda.get_device_properties(self.device)
            report.update(
                gpu=properties.name,
                gpu_memory_bytes=properties.total_memory,
                gpu_peak_memory_bytes=torch.cuda.max_memory_allocated(self.device),
                gpu_memory_fraction=self.gpu_memory_fraction,
                cuda=torch.version.cuda,
            )
        return report


CPU = Runtime()
"""The default for library callers that say nothing: exact float32 on the CPU."""
