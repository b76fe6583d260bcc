"""The original model waits on disk while the ONNX deliverables are made.

Why: a job holds its original model from its first stage to its report (which draws the
relevance of the original beside the compressed model's), but between the last step and the
report nothing reads it: onnxruntime times its own ONNX copy of it. For a big model that idle
copy is the largest single item at the job's peak, the export (VGG-11-BN: 0.5 GiB of 2.7 GiB,
beside the two onnxruntime sessions timed against each other). Parked, the module keeps its
values, but its parameters and buffers live in a private mapping of a file: pages not read
are not resident, and whatever reads them later (the report) reads them back from the file.

The file may be deleted once parked (Linux keeps a mapped file until it is unmapped); its disk
space is freed with the module. The folder should be on disk: on a tmpfs the file's pages are
memory too. Parking that fails (a full disk) leaves the model as it was: the job goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

log = logging.getLogger(__name__)

PARKED = "parked_original.pt"


def park(module: torch.nn.Module, folder: Path) -> bool:
    """Move ``module``'s state into a file in ``folder`` that backs it from now on; True when
    parked. A module with any tensor off the CPU (or none) is left as it is: device memory
    is not the host's."""
    tensors = dict((*module.named_parameters(), *module.named_buffers()))  # not persistent too
    if not tensors or any(tensor.device.type != "cpu" for tensor in tensors.values()):
        return False
    path = folder / PARKED
    try:
        torch.save({name: tensor.detach() for name, tensor in tensors.items()}, path)
        mapped = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except (OSError, RuntimeError) as exc:  # a full disk, no address space left: not parked
        log.warning("the original model stays in memory: %s", exc)
        path.unlink(missing_ok=True)
        return False
    with torch.no_grad():  # the same Parameter objects (ties, references kept), new storage
        for name, tensor in tensors.items():
            tensor.data = mapped[name]  # the resident storage is freed here
    return True
