"""Make tensors held by ``Identity`` and ``Constant`` nodes initializers of the graph.

The legacy exporter (``torch.onnx.export(..., dynamo=False)``) stores a tensor once and feeds
every other user of an equal tensor (often the zero biases of BatchNorm-folded convs) through
an ``Identity`` node; some exporters hold weights in ``Constant`` nodes. onnx2torch reads conv,
linear and norm weights only from initializers, so such graphs fail with ``KeyError:
'onnx::Conv_NNN'`` (onnx2torch issue #156). Rewriting those nodes into initializers gives the
same graph in the form the converter reads; only the main graph is touched.
"""

from __future__ import annotations

import onnx
from onnx import helper

from compression.io.onnx_offload import Weights

_DEFAULT_DOMAINS = ("", "ai.onnx")


def _constant_value(node: onnx.NodeProto) -> onnx.TensorProto | None:
    """The tensor a Constant node produces, for the attribute kinds that hold plain values."""
    if len(node.attribute) != 1:
        return None
    attribute = node.attribute[0]
    if attribute.name == "value":
        tensor = onnx.TensorProto()
        tensor.CopyFrom(attribute.t)
        return tensor
    scalars = {
        "value_float": (onnx.TensorProto.FLOAT, []),
        "value_floats": (onnx.TensorProto.FLOAT, None),
        "value_int": (onnx.TensorProto.INT64, []),
        "value_ints": (onnx.TensorProto.INT64, None),
    }
    if attribute.name not in scalars:
        return None  # sparse tensors and strings stay Constant nodes
    data_type, dims = scalars[attribute.name]
    value = helper.get_attribute_value(attribute)
    items = list(value) if dims is None else [value]
    return helper.make_tensor("", data_type, [len(items)] if dims is None else dims, items)


def fold_constant_holders(proto: onnx.ModelProto, weights: Weights | None = None) -> int:
    """Turn Identity-of-initializer and Constant nodes into initializers; return how many.

    An Identity of an offloaded tensor (see :mod:`onnx_offload`) shares its value in
    ``weights`` under the new name, without a copy.

    Nodes are in topological order, so one pass also resolves chains (Identity of Identity).
    Nodes whose output is a graph output stay, as an initializer cannot be one by itself.
    """
    graph = proto.graph
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    graph_outputs = {value.name for value in graph.output}
    kept: list[onnx.NodeProto] = []
    folded = 0
    for node in graph.node:
        tensor = None
        if node.domain in _DEFAULT_DOMAINS and node.output and node.output[0] not in graph_outputs:
            if node.op_type == "Identity" and node.input and node.input[0] in initializers:
                tensor = onnx.TensorProto()
                tensor.CopyFrom(initializers[node.input[0]])
                if weights is not None and node.input[0] in weights:
                    weights[node.output[0]] = weights[node.input[0]]
            elif node.op_type == "Constant":
                tensor = _constant_value(node)
        if tensor is None:
            kept.append(node)
            continue
        tensor.name = node.output[0]
        graph.initializer.append(tensor)
        initializers[tensor.name] = graph.initializer[-1]
        folded += 1
    if folded:
        del graph.node[:]
        graph.node.extend(kept)
    return folded
