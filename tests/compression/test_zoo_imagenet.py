"""The eight ImageNet-family architectures match their published sizes and run at any width."""

from __future__ import annotations

import pytest
import torch

from compression import zoo
from compression.zoo.imagenet import BUILDERS

# Parameter counts of the 1000-class models as torchvision documents them (GoogLeNet
# without its auxiliary heads, which only exist in training).
PUBLISHED = {
    "resnet18": 11_689_512,
    "mobilenet_v2": 3_504_872,
    "mobilenet_v3_small": 2_542_856,
    "efficientnet_b0": 5_288_548,
    "densenet121": 7_978_856,
    "squeezenet1_1": 1_235_496,
    "googlenet": 6_624_904,
    "vgg11_bn": 132_868_840,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_full_width_matches_published_parameter_count(name):
    model, shape = zoo.build(name, {"num_classes": 1000})
    assert shape == (3, 224, 224)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[name]


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_small_width_runs(name):
    size = 224 if name == "vgg11_bn" else 64
    model, shape = zoo.build(name, {"width": 0.25, "image_size": size, "num_classes": 7})
    with torch.no_grad():
        assert model.eval()(torch.rand(2, *shape)).shape == (2, 7)
