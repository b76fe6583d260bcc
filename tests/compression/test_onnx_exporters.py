"""ONNX intake takes what exporters write: Identity-shared tensors, external data archives,
and names the node when a graph cannot be converted."""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from compression import zoo
from compression.errors import InvalidModel, UnsafeArchive, UnsupportedOperator
from compression.io import detect_model_format, load_model
from compression.io.onnx_constants import fold_constant_holders
from compression.io.user_formats import pack_onnx_archive, write_dynamo_onnx, write_legacy_onnx


@pytest.fixture(scope="module")
def resnet() -> tuple[torch.nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    model, shape = zoo.build("resnet18", {"width": 0.125, "image_size": 32})
    with torch.no_grad():  # folded into conv weights; zero means keep equal (shared) biases
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_var.uniform_(0.5, 2.0)
    return model.eval(), torch.rand(2, *shape)


@pytest.fixture(scope="module")
def dynamo_export(resnet, tmp_path_factory) -> Path:
    """``model.onnx`` + ``model.onnx.data`` as torch.onnx.export(dynamo=True) writes them."""
    model, example = resnet
    return write_dynamo_onnx(model, example, tmp_path_factory.mktemp("export"))


def _same_outputs(loaded, model: torch.nn.Module, example: torch.Tensor) -> float:
    with torch.no_grad():
        return float((loaded.module(example) - model(example)).abs().max())


def test_legacy_export_with_identity_shared_tensors_loads(resnet, tmp_path):
    model, example = resnet
    path = write_legacy_onnx(model, example, tmp_path / "model.onnx")
    identities = [n for n in onnx.load(str(path)).graph.node if n.op_type == "Identity"]
    assert identities, "the legacy exporter shares tensors through Identity nodes"
    loaded = load_model(str(path))
    assert loaded.input_shape == (3, 32, 32) and loaded.num_classes == 10
    assert _same_outputs(loaded, model, example) < 1e-5


def test_fold_turns_identity_chains_and_constants_into_initializers():
    weight = numpy_helper.from_array(np.arange(4, dtype=np.float32).reshape(1, 1, 2, 2), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Identity", ["w"], ["w1"]),
            helper.make_node("Identity", ["w1"], ["w2"]),
            helper.make_node("Constant", [], ["b"], value_floats=[0.5]),
            helper.make_node("Conv", ["x", "w2", "b"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 3, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 2, 2])],
        [weight],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    assert fold_constant_holders(proto) == 3
    assert [n.op_type for n in proto.graph.node] == ["Conv"]
    tensors = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert np.array_equal(tensors["w2"], tensors["w"]) and tensors["b"].tolist() == [0.5]
    onnx.checker.check_model(proto)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_external_data_archive_loads(resnet, dynamo_export, tmp_path, kind):
    model, example = resnet
    path = pack_onnx_archive(dynamo_export, tmp_path / f"model.{kind}", kind)
    with zipfile.ZipFile(path) if kind == "zip" else tarfile.open(path) as archive:
        names = archive.namelist() if kind == "zip" else archive.getnames()
    assert sorted(names) == ["model/model.onnx", "model/model.onnx.data"]
    assert detect_model_format(str(path)) == "onnx"
    loaded = load_model(str(path))
    assert loaded.source == "onnx"
    assert _same_outputs(loaded, model, example) < 1e-5


def test_bare_onnx_with_external_data_says_how_to_upload(dynamo_export):
    with pytest.raises(InvalidModel, match=r"upload them together.*zip model\.zip"):
        load_model(str(dynamo_export))


def _archive(tmp_path: Path, members: dict[str, bytes]) -> Path:
    path = tmp_path / "upload.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _relocated(export: Path, location: str) -> bytes:
    proto = onnx.load(str(export), load_external_data=False)
    for tensor in proto.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    return proto.SerializeToString()


def test_data_file_outside_the_archive_is_refused(dynamo_export, tmp_path):
    members = {"m/model.onnx": _relocated(dynamo_export, "../../etc/passwd"), "m/x.data": b""}
    with pytest.raises(UnsafeArchive, match="outside the archive"):
        load_model(str(_archive(tmp_path, members)))


def test_missing_data_file_is_named(dynamo_export, tmp_path):
    members = {"model.onnx": _relocated(dynamo_export, "weights.bin")}
    with pytest.raises(InvalidModel, match=r"'weights\.bin', which the archive does not hold"):
        load_model(str(_archive(tmp_path, members)))


def test_short_data_file_is_refused(dynamo_export, tmp_path):
    members = {"model.onnx": _relocated(dynamo_export, "w.bin"), "w.bin": b"\0" * 8}
    with pytest.raises(InvalidModel, match="does not belong to this model"):
        load_model(str(_archive(tmp_path, members)))


def test_archive_needs_exactly_one_model(tmp_path):
    with pytest.raises(InvalidModel, match=r"exactly one \.onnx file \(found a\.onnx, b\.onnx\)"):
        load_model(str(_archive(tmp_path, {"a.onnx": b"", "b.onnx": b""})))


def _conv_graph(tail: list[onnx.NodeProto], weight_from_mul: bool = False) -> onnx.ModelProto:
    weight = numpy_helper.from_array(np.ones((4, 1, 3, 3), np.float32), "w")
    two = numpy_helper.from_array(np.array(2.0, np.float32), "two")
    nodes = [helper.make_node("Mul", ["w", "two"], ["w2"], name="scale_weight")]
    conv_weight = "w2" if weight_from_mul else "w"
    nodes.append(helper.make_node("Conv", ["x", conv_weight], ["c"], name="conv"))
    nodes.append(helper.make_node("Flatten", ["c"], ["f"], name="flat"))
    graph = helper.make_graph(
        nodes + tail, "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 1, 4, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 16])],
        [weight, two],
    )  # fmt: skip
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_unconvertible_operator_names_node_and_what_to_do(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_conv_graph([helper.make_node("Hardmax", ["f"], ["y"], name="argmax_head")]), path)
    with pytest.raises(UnsupportedOperator) as caught:
        load_model(str(path))
    assert "Hardmax (node 'argmax_head')" in caught.value.message
    assert "opset 17" in caught.value.message and "torch.export.save" in caught.value.message


def test_failed_conversion_names_the_node(tmp_path):
    path = tmp_path / "m.onnx"
    tail = [helper.make_node("Relu", ["f"], ["y"], name="act")]
    onnx.save(_conv_graph(tail, weight_from_mul=True), path)
    with pytest.raises(UnsupportedOperator, match=r"at Conv \(node 'conv'\)"):
        load_model(str(path))
