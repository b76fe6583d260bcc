"""benchmarks/gpu.py: its ResNet-50 has torchvision's layout, and the script runs end to end
on the CPU as a smoke check (`--device cpu --quick`, marked slow: minutes on a busy CPU)."""

from __future__ import annotations

import pytest
import torch

from benchmarks import gpu
from compression.zoo.imagenet import ImageNetArgs


def test_resnet50_has_torchvision_parameter_count() -> None:
    with torch.device("meta"):
        model = gpu.ResNet50(ImageNetArgs(num_classes=1000))
    assert sum(p.numel() for p in model.parameters()) == 25_557_032  # torchvision resnet50
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 53  # 49 in the blocks and stem, 4 projection shortcuts


@pytest.mark.slow
def test_the_benchmark_runs_on_the_cpu_quick() -> None:
    text = gpu.main(["--device", "cpu", "--quick"])
    for row in ("| resnet18 |", "| resnet50 |", "| wall time, whole job |", "seconds per stage"):
        assert row in text
    assert "On CPU (cpu)" in text
