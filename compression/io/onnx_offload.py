"""Keep an ONNX model's weights out of its proto while the graph is checked and rewritten.

Checking, opset conversion and shape inference each serialise the whole proto (weights
included) and parse a copy back: for VGG-11-BN (515 MB) that was 6.6x the model in memory
and over a minute before conversion began. None of them needs the weight values, so the
weights wait outside the proto (by tensor name, as bytes or zero-copy views into an archive
member) and go back in just before onnx2torch builds the torch module.
"""

from __future__ import annotations

import math

import numpy as np
import onnx
from onnx import helper

from compression.errors import InvalidModel

OFFLOAD_BYTES = 1024
"""Tensors smaller than this (shapes, axes, scalars) stay: graph rewrites read their values."""

Weights = dict[str, bytes | memoryview]


def expected_bytes(tensor: onnx.TensorProto) -> int:
    itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return math.prod(tensor.dims) * itemsize


def take(tensor: onnx.TensorProto, data: bytes | memoryview, weights: Weights) -> None:
    """Hold ``data`` as the value of ``tensor``, which keeps only its name, type and dims."""
    if len(data) != expected_bytes(tensor):
        raise InvalidModel(
            f"tensor {tensor.name!r} holds {len(data)} bytes but its shape "
            f"{list(tensor.dims)} needs {expected_bytes(tensor)}"
        )
    weights[tensor.name] = data
    tensor.ClearField("raw_data")


def offload(proto: onnx.ModelProto, weights: Weights) -> None:
    """Move the raw data of every large initializer of the main graph into ``weights``."""
    for tensor in proto.graph.initializer:
        if tensor.HasField("raw_data") and len(tensor.raw_data) >= OFFLOAD_BYTES:
            take(tensor, tensor.raw_data, weights)


def check(proto: onnx.ModelProto, weights: Weights) -> None:
    """onnx's checker on a copy in which each offloaded tensor is a one-value stand-in (the
    checker insists on data of the declared size; ``take`` already checked the sizes)."""
    light = onnx.ModelProto()
    light.CopyFrom(proto)
    for tensor in light.graph.initializer:
        if tensor.name in weights:
            del tensor.dims[:]
            tensor.raw_data = bytes(expected_bytes(tensor) or 1)
    onnx.checker.check_model(light)


def restore(proto: onnx.ModelProto, weights: Weights) -> None:
    """Put every offloaded value back (``weights`` is emptied as it goes)."""
    for tensor in proto.graph.initializer:
        data = weights.pop(tensor.name, None)
        if data is None:
            continue
        if len(data) != expected_bytes(tensor):
            raise InvalidModel(
                f"tensor {tensor.name!r} changed shape while the graph was rewritten"
            )
        tensor.raw_data = bytes(data)
