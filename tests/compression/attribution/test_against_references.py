"""The one-pass engine agrees with an independent implementation and with captum (fixed)."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from captum.attr import LayerDeepLift
from captum.attr._core import deep_lift
from torch import nn

from compression.attribution.captum_patch import (
    _fixed_maxpool,
    captum_still_broken,
    patched_deeplift,
    separate_chained_nonlinearities,
)
from compression.attribution.engine import attribute
from compression.attribution.normalize import normalize
from compression.data import Dataset
from compression.io import LoadedModel
from tests.compression.attribution.reference_deeplift import reference_relevance


def _per_channel_abs(relevance: torch.Tensor) -> torch.Tensor:
    values = relevance.abs()
    return (values.flatten(2).sum(dim=2) if values.dim() > 2 else values).mean(dim=0)


def test_engine_matches_the_independent_implementation() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(),
        nn.MaxPool2d(2), nn.Flatten(), nn.Linear(96, 16), nn.ReLU(), nn.Linear(16, 10),
    )  # fmt: skip
    x = torch.rand(6, 1, 8, 8)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    expected = reference_relevance(model, x, torch.zeros(1, 1, 8, 8), y)
    layers = {str(i): model[i] for i in (0, 2, 6, 8)}

    result = attribute(model, layers, Dataset(x, y, tuple("abcdef")), batch_size=4)

    for name in layers:
        assert torch.allclose(
            result.layers[name].channel, _per_channel_abs(expected[int(name)]), atol=1e-5
        ), name
    total = expected[-1].flatten(1).sum(dim=1)  # input relevance per sample
    for index in (0, 2, 4, 6, 8):  # every layer output of a sequential model is a full cut
        assert torch.allclose(expected[index].flatten(1).sum(dim=1), total, atol=1e-4)


def _captum_channels(gm: nn.Module, layer: nn.Module, data: Dataset) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        relevance = LayerDeepLift(gm, layer).attribute(
            data.x, baselines=torch.zeros_like(data.x), target=data.y
        )
    return _per_channel_abs(relevance.detach())


def test_one_pass_equals_per_layer_captum_with_the_fixes(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    model = trained_digits_cnn.module
    data = digits.subset(torch.arange(128))
    layers = {name: model.get_submodule(name) for name in ("conv1", "conv2", "fc1", "fc2")}
    ours = attribute(model, layers, data, batch_size=50)
    gm = separate_chained_nonlinearities(normalize(model))
    with patched_deeplift():
        for name in layers:
            captum = _captum_channels(gm, gm.get_submodule(name), data)
            assert torch.allclose(ours.layers[name].channel, captum, atol=1e-5), name


def test_unpatched_captum_is_wrong_below_relu_into_maxpool(
    trained_digits_cnn: LoadedModel, digits: Dataset
) -> None:
    """Documents the bugs the patch exists for; when this fails, captum is fixed: drop it."""
    assert captum_still_broken()
    model = trained_digits_cnn.module
    data = digits.subset(torch.arange(128))
    layers = {"conv2": model.conv2}
    ours = attribute(model, layers, data)
    gm = normalize(model)
    captum = _captum_channels(gm, gm.get_submodule("conv2"), data)
    assert float((ours.layers["conv2"].channel - captum.detach()).abs().max()) > 1e-3


def test_hook_fix_is_needed(trained_digits_cnn: LoadedModel, digits: Dataset) -> None:
    model = trained_digits_cnn.module
    data = digits.subset(torch.arange(128))
    ours = attribute(model, {"conv1": model.conv1}, data)
    gm = normalize(model)  # no separate_chained_nonlinearities: ReLU and MaxPool share a tensor
    with patched_deeplift():
        captum = _captum_channels(gm, gm.get_submodule("conv1"), data)
    assert float((ours.layers["conv1"].channel - captum).abs().max()) > 1e-3


def test_maxpool_fallback_fix_keeps_each_samples_gradient() -> None:
    pool = nn.MaxPool2d(2)
    x = torch.rand(3, 1, 4, 4)
    inputs = torch.cat([x, x])  # input == reference: every position takes the fallback
    pool.input = inputs
    outputs = pool(inputs)
    grad_input = torch.rand(6, 1, 4, 4)
    grad_output = torch.rand(6, 1, 2, 2)
    fixed = _fixed_maxpool(pool, inputs, outputs, grad_input, grad_output)
    broken = deep_lift.maxpool(
        pool, F.max_pool2d, F.max_unpool2d, inputs, outputs, grad_input, grad_output
    )
    assert torch.equal(fixed, grad_input)
    assert torch.equal(broken, grad_input[0].expand_as(grad_input))  # captum 0.9: sample 0
