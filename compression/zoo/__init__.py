"""Built-in architectures a user can name when uploading bare safetensors weights.

Each entry pairs a constructor with a pydantic model of its arguments, so arguments arriving
as JSON are validated (and documented) before any tensor is touched.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from compression.errors import InvalidModel
from compression.intake_limits import DEFAULT_LIMITS, IntakeLimits, check
from compression.zoo.cnn1d import CNN1d, CNN1dArgs
from compression.zoo.imagenet import BUILDERS as IMAGENET_BUILDERS
from compression.zoo.imagenet import ImageNetArgs
from compression.zoo.lenet import LeNet5, LeNet5Args
from compression.zoo.mlp import MLPArgs, mlp
from compression.zoo.resnet import ResNet, ResNetArgs
from compression.zoo.small_cnn import SmallCNN, SmallCNNArgs
from compression.zoo.vgg import VGG, VGGArgs


@dataclass(frozen=True)
class Architecture:
    args_model: type[BaseModel]
    build: Callable[[Any], nn.Module]


def _resnet(depth: int) -> Architecture:
    def build(args: ResNetArgs) -> nn.Module:
        return ResNet(args, depth)

    return Architecture(ResNetArgs, build)


ARCHITECTURES: Mapping[str, Architecture] = {
    "mlp": Architecture(MLPArgs, mlp),
    "lenet5": Architecture(LeNet5Args, LeNet5),
    "small_cnn": Architecture(SmallCNNArgs, SmallCNN),
    "cnn1d": Architecture(CNN1dArgs, CNN1d),
    "vgg": Architecture(VGGArgs, VGG),
    "resnet20": _resnet(20),
    "resnet56": _resnet(56),
    **{name: Architecture(ImageNetArgs, build) for name, build in IMAGENET_BUILDERS.items()},
}


def build(
    name: str, args: Mapping[str, Any] | None = None, limits: IntakeLimits = DEFAULT_LIMITS
) -> tuple[nn.Module, tuple[int, ...]]:
    """Build a zoo model from its name and JSON-like arguments; return it and its input shape.

    Arguments come from users, and a few bytes of them can ask for a model of many gigabytes,
    so the input size is checked from the arguments and the parameter count from a copy built
    on the ``meta`` device (shapes only, no memory), before the real model is built.
    """
    if name not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise InvalidModel(f"unknown architecture {name!r}; choose one of: {known}")
    architecture = ARCHITECTURES[name]
    try:
        parsed = architecture.args_model.model_validate(dict(args or {}))
    except ValidationError as exc:
        raise InvalidModel(
            f"invalid arguments for {name}: {exc.errors(include_url=False)}"
        ) from exc
    input_shape = parsed.input_shape()  # type: ignore[attr-defined]
    check(limits, "max_input_elements", math.prod(input_shape), "the elements of one input sample")
    with torch.device("meta"):
        shapes_only = architecture.build(parsed)
    parameters = sum(parameter.numel() for parameter in shapes_only.parameters())
    check(limits, "max_model_parameters", parameters, f"the parameter count of {name}")
    return architecture.build(parsed), input_shape
