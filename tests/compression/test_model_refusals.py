"""Bad model files fail with a stable code and a message that says what to do; pickles and
TorchScript are refused without running any of their code."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper
from safetensors.torch import save_file
from torch import nn

from compression import zoo
from compression.errors import (
    InvalidModel,
    ShapeMismatch,
    UnsupportedFormat,
    UnsupportedOperator,
)
from compression.io import export_onnx, export_pt2, load_model


class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _assert_refused(path: Path, error: type, code: str, marker: Path | None = None) -> str:
    with pytest.raises(error) as caught:
        load_model(str(path))
    assert caught.value.code == code
    if marker is not None:
        assert not marker.exists(), "the file's code was executed"
    return caught.value.message


def test_legacy_pickle_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    path.write_bytes(pickle.dumps({"state": Payload(marker)}, protocol=2))
    message = _assert_refused(path, UnsupportedFormat, "unsupported_format", marker)
    assert "safetensors" in message and ".pt2" in message


def test_zip_checkpoint_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"state": Payload(marker)}, path)
    _assert_refused(path, UnsupportedFormat, "unsupported_format", marker)


def test_torchscript_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), str(path))
    message = _assert_refused(path, UnsupportedFormat, "unsupported_format")
    assert "TorchScript" in message and "torch.export" in message


def test_pt2_with_a_hostile_pickle_is_refused_unexecuted(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    good = tmp_path / "good.pt2"
    export_pt2(nn.Sequential(nn.Linear(4, 3)), torch.rand(2, 4), good)
    hostile = tmp_path / "hostile.pt2"
    payload = io.BytesIO()
    torch.save((Payload(marker),), payload)
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(hostile, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if "sample_inputs" in info.filename:
                data = payload.getvalue()
            target.writestr(info, data)

    message = _assert_refused(hostile, InvalidModel, "invalid_model", marker)
    assert "sample_inputs" in message
    with pytest.raises(Exception):  # noqa: B017 - control: torch itself would have run it
        torch.load(io.BytesIO(payload.getvalue()), weights_only=True)


def test_random_bytes_are_not_a_model(tmp_path: Path) -> None:
    path = tmp_path / "junk.bin"
    path.write_bytes(bytes(range(256)) * 4)
    _assert_refused(path, UnsupportedFormat, "unsupported_format")


def _onnx_file(path: Path, nodes, inputs, outputs, initializers=(), opset: int = 17) -> Path:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save_model(model, str(path))
    return path


def _value(name: str, *shape: int | str):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


def test_onnx_with_an_unconvertible_operator_names_it(tmp_path: Path) -> None:
    weight = numpy_helper.from_array(torch.rand(3, 4).numpy(), "w")
    path = _onnx_file(
        tmp_path / "cosh.onnx",
        [
            helper.make_node("Cosh", ["x"], ["h"]),
            helper.make_node("Gemm", ["h", "w"], ["y"], transB=1),
        ],
        [_value("x", "n", 4)],
        [_value("y", "n", 3)],
        [weight],
    )
    message = _assert_refused(path, UnsupportedOperator, "unsupported_operator")
    assert "Cosh" in message


def test_onnx_with_external_data_is_refused(tmp_path: Path) -> None:
    exported = tmp_path / "inline.onnx"
    export_onnx(nn.Sequential(nn.Linear(4, 3)), torch.rand(2, 4), exported)
    model = onnx.load(str(exported))
    external = tmp_path / "external.onnx"
    onnx.save_model(model, str(external), save_as_external_data=True, size_threshold=0)
    message = _assert_refused(external, InvalidModel, "invalid_model")
    assert "external data" in message


def test_onnx_with_two_inputs_is_refused(tmp_path: Path) -> None:
    path = _onnx_file(
        tmp_path / "two.onnx",
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [_value("a", "n", 4), _value("b", "n", 4)],
        [_value("y", "n", 4)],
    )
    assert "2 inputs" in _assert_refused(path, InvalidModel, "invalid_model")


def test_model_that_is_not_a_classifier_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "conv.pt2"
    export_pt2(nn.Conv2d(1, 2, 3), torch.rand(2, 1, 5, 5), path)
    assert "(batch, classes)" in _assert_refused(path, InvalidModel, "invalid_model")


def test_safetensors_need_a_known_architecture(tmp_path: Path) -> None:
    model, _ = zoo.build("mlp")
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    with pytest.raises(InvalidModel, match="name the architecture"):
        load_model(str(path))
    with pytest.raises(InvalidModel, match="unknown architecture 'alexnet'"):
        load_model(str(path), architecture="alexnet")
    with pytest.raises(InvalidModel, match="invalid arguments for mlp"):
        load_model(str(path), architecture="mlp", architecture_args={"num_classes": "many"})


def test_safetensors_of_another_shape_is_a_shape_mismatch(tmp_path: Path) -> None:
    model, _ = zoo.build("mlp", {"in_features": 32})
    path = tmp_path / "w.safetensors"
    save_file(model.state_dict(), str(path))
    with pytest.raises(ShapeMismatch, match=r"weight 1.weight has shape \(128, 32\)") as caught:
        load_model(str(path), architecture="mlp")
    assert caught.value.code == "shape_mismatch"


def test_safetensors_with_missing_weights_is_refused(tmp_path: Path) -> None:
    model, _ = zoo.build("mlp")
    state = model.state_dict()
    state.pop("1.bias")
    save_file(state, str(tmp_path / "w.safetensors"))
    with pytest.raises(InvalidModel, match=r"missing \['1.bias'\]"):
        load_model(str(tmp_path / "w.safetensors"), architecture="mlp")
