"""Long stages report as they go: a wide layer is worked through, and reported, a slice of
channels at a time, so no stretch between two reports grows with the width of the model.

The bound is counted in work, not seconds: the test counts the slices quantized (one per
candidate width while the bit allocation measures errors, one while quantizing) and layers
coded between consecutive reports, which a busy machine cannot make flaky."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from compression import quantization
from compression.criteria import get_criterion
from compression.data import Dataset
from compression.layers import weighted_layers
from compression.packed import save_packed
from compression.packed import writer as packed_writer
from compression.progress import Monitor
from compression.steps import WorkingModel, apply_step
from jobspec import QuantizeMixed

SLICE = 1024  # weights per slice in these tests (SLICE_WEIGHTS is 4M in production)


def _many_layers(wide: int = 1024) -> nn.Module:
    """Seventeen layers, the widest ``wide`` x 512 (512 slices of 1024 weights by default)."""
    torch.manual_seed(0)
    narrow = [layer for _ in range(12) for layer in (nn.Linear(32, 32), nn.ReLU())]
    return nn.Sequential(nn.Linear(16, 512), nn.ReLU(), nn.Linear(512, 32), *narrow,
                         nn.Linear(32, wide), nn.ReLU(), nn.Linear(wide, 512), nn.ReLU(),
                         nn.Linear(512, 10)).eval()  # fmt: skip


def _working(module: nn.Module) -> WorkingModel:
    example = torch.randn(2, 16)
    return WorkingModel(module, example, weighted_layers(module, example))


def test_quantizing_reports_after_every_slice_of_every_layer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(quantization, "SLICE_WEIGHTS", SLICE)
    slices = {"worked": 0}
    levels = quantization._levels

    def counted(*args: object) -> torch.Tensor:
        slices["worked"] += 1
        return levels(*args)

    monkeypatch.setattr(quantization, "_levels", counted)
    between: list[int] = []
    stages: set[str] = set()

    def progress(stage: str, fraction: float, overall: float) -> None:
        stages.add(stage)
        between.append(slices["worked"])
        slices["worked"] = 0

    working = _working(_many_layers())
    step = QuantizeMixed(average_bits=5, candidate_bits=[2, 4, 8], allocation="magnitude")
    data = Dataset(torch.randn(4, 16), torch.zeros(4, dtype=torch.long), ("a", "b"))
    details = apply_step(working, step, get_criterion("l1"), data, Monitor(progress))

    assert stages == {"quantizing"}
    assert len(working.encodings) == 17 and set(details["bits"].values()) <= {2, 4, 8}
    slice_count = sum(len(quantization.channel_slices(m.weight)) for m in working.layers.values())
    # 1024-weight slices: 16->512 in 8, 512->32 in 16, 12 x 32->32 in one each, 32->1024 in
    # 32, 1024->512 in 512 (a channel each), 512->10 in 5
    assert slice_count == 8 + 16 + 12 + 32 + 512 + 5
    # Each slice is measured at the 3 widths, then quantized once: 4 units of work per slice,
    # and a report after each, so no gap ever holds more than one slice's work.
    assert sum(between) == 4 * slice_count
    assert max(between) == 3
    assert len(between) >= 2 * slice_count


def test_packing_reports_after_every_layer(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    coded = {"layers": 0}
    encode = packed_writer.encode_layer

    def counted(*args: object) -> object:
        coded["layers"] += 1
        return encode(*args)

    monkeypatch.setattr(packed_writer, "encode_layer", counted)
    working = _working(_many_layers(wide=64))  # coding is slow; the count of layers matters
    for name, layer in working.layers.items():  # the float weights are what the codes say
        working.encodings[name] = quantization.quantize_weight(layer.weight, 4)
        working.set_weight(name, working.encodings[name].dequantize())
    between: list[int] = []

    def progress(fraction: float) -> None:
        between.append(coded["layers"])
        coded["layers"] = 0

    save_packed(
        working.module,
        working.example,
        tmp_path / "m.xaic",
        working.encodings,
        {},
        progress=progress,
    )
    assert between == [1] * 17 + [0]  # each layer, then the architecture and the file
