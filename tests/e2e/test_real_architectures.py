"""The block types of eight real architectures, exported the three ways PyTorch users export
them, each compressed as a job over HTTP by the embedded server (`make run`), and each
compressed ONNX artifact checked against the compressed torch model in onnxruntime.

Small widths keep it to minutes: the block types (residual adds, depthwise convs, squeeze-
excite products with hardswish/hardsigmoid and SiLU/sigmoid, dense and fire concatenations,
inception branches, VGG's BatchNorm and 7x7-pooled big FC) are what intake, pruning,
attribution and export must get right. Calibration data: uint8 images covering 4 of the 10
classes, resized to each model's input and ImageNet-normalized by the job's preprocessing.
"""

from __future__ import annotations

import io
import os
import socket
import time
from pathlib import Path

import httpx
import numpy as np
import onnxruntime
import pytest
import torch

from compression import zoo
from compression.io.user_formats import USER_FORMATS, write_as
from compression.zoo.imagenet import BUILDERS
from tests.e2e.server import EmbeddedServer

ARCHITECTURES = [n for n in BUILDERS if n in os.environ.get("XAI_MATRIX_ARCHS", ",".join(BUILDERS))]

SPEC = {
    "steps": [
        {"type": "prune_filters", "ratio": 0.3},
        {"type": "quantize_mixed", "average_bits": 6},
    ],
    "attribution": {"samples": 8, "batch_size": 8},
    "evaluation": {"batch_size": 16, "latency_repeats": 3},
    "preprocessing": {"normalize": "imagenet"},
}


def _args(name: str) -> dict[str, object]:
    # VGG keeps 224x224 so its 7x7 adaptive pool and 25088-style flatten stay real (narrow)
    return (
        {"width": 0.0625, "image_size": 224}
        if name == "vgg11_bn"
        else {"width": 0.25, "image_size": 32}
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory):
    """``export(architecture, format)``: the small model written as a user would (cached)."""
    folder = tmp_path_factory.mktemp("exports")
    files: dict[tuple[str, str], Path] = {}

    def write(name: str, user_format: str) -> Path:
        if (name, user_format) not in files:
            torch.manual_seed(0)
            model, shape = zoo.build(name, _args(name))
            with torch.no_grad():  # BatchNorm statistics as a trained model has them
                for module in model.modules():
                    if isinstance(module, torch.nn.BatchNorm2d):
                        module.running_var.uniform_(0.5, 2.0)
            stem = folder / f"{name}-{user_format}"
            files[name, user_format] = write_as(user_format, model, torch.rand(2, *shape), stem)
        return files[name, user_format]

    return write


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("server")
    env = {"MAX_MODEL_BYTES": str(64 * 1024**2), "WORKER_THREADS": "2"}
    running = EmbeddedServer(workdir, _free_port(), env)
    key = (workdir / "data" / "api-key").read_text().strip()
    with httpx.Client(base_url=running.url, headers={"Authorization": f"Bearer {key}"},
                      timeout=60) as client:  # fmt: skip
        yield client
    running.stop()


def _calibration_npz() -> bytes:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (24, 32, 32, 3), dtype=np.uint8)  # channels last, as images come
    y = np.array([0, 3, 5, 9] * 6)  # 4 of the model's 10 classes
    buffer = io.BytesIO()
    np.savez(buffer, x=x, y=y)
    return buffer.getvalue()


def _wait(client: httpx.Client, path: str, done: set[str], timeout: float = 900) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(path).raise_for_status().json()
        if body["status"] in done:
            return body
        time.sleep(0.5)
    raise AssertionError(f"{path} did not finish: {body}")


# One job per architecture, the export formats taking turns (each format meets 2-3
# architectures), and the other 16 combinations: minutes each on two cores, so both run in
# `make test-slow` (CI runs it after `make test`).
ROTATION = [(name, USER_FORMATS[index % 3]) for index, name in enumerate(ARCHITECTURES)]
REST = [(n, f) for n in ARCHITECTURES for f in USER_FORMATS if (n, f) not in ROTATION]


@pytest.mark.slow
def test_each_architecture_compresses_over_http(server, export, tmp_path):
    _compress_all(server, {key: export(*key) for key in ROTATION}, tmp_path)


@pytest.mark.slow
def test_every_export_of_every_architecture_compresses_over_http(server, export, tmp_path):
    _compress_all(server, {key: export(*key) for key in REST}, tmp_path)


def _compress_all(server: httpx.Client, uploads: dict[tuple[str, str], Path], tmp_path) -> None:
    dataset = server.post("/v1/datasets", files={"file": ("calib.npz", _calibration_npz())})
    dataset_id = dataset.raise_for_status().json()["id"]
    models = {}
    for key, path in uploads.items():
        response = server.post("/v1/models", files={"file": (path.name, path.read_bytes())})
        models[key] = response.raise_for_status().json()["id"]
    assert _wait(server, f"/v1/datasets/{dataset_id}", {"ready", "invalid"})["status"] == "ready"
    jobs = {}
    for key, model_id in models.items():
        record = _wait(server, f"/v1/models/{model_id}", {"ready", "invalid"})
        assert record["status"] == "ready", (key, record["error"])
        body = {"model_id": model_id, "dataset_id": dataset_id, **SPEC}
        jobs[key] = server.post("/v1/jobs", json=body).raise_for_status().json()["id"]
    failures = []
    for key, job_id in jobs.items():
        job = _wait(server, f"/v1/jobs/{job_id}", {"succeeded", "failed", "cancelled"})
        if job["status"] != "succeeded":
            failures.append((key, job["error"]))
            continue
        _check_job(server, key, job, tmp_path)
    assert not failures, failures


def _check_job(server: httpx.Client, key: tuple[str, str], job: dict, tmp_path: Path) -> None:
    metrics = job["metrics"]
    assert metrics["after"]["macs"] < metrics["before"]["macs"], key
    assert metrics["data"]["model_classes"] == 10 and metrics["data"]["classes_covered"] == 4
    assert metrics["latency"]["threads"] >= 1 and metrics["steps"][1]["average_bits"] <= 6
    files = {}
    for name in ("model.onnx", "model.pt2"):
        response = server.get(f"/v1/jobs/{job['id']}/artifacts/{name}", follow_redirects=True)
        files[name] = tmp_path / f"{key[0]}-{key[1]}-{name}"
        files[name].write_bytes(response.raise_for_status().content)
    compressed = torch.export.load(str(files["model.pt2"])).module()
    input_shape = (3, 224, 224) if key[0] == "vgg11_bn" else (3, 32, 32)
    x = torch.randn(3, *input_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = compressed(x).numpy()
    session = onnxruntime.InferenceSession(str(files["model.onnx"]),
                                           providers=["CPUExecutionProvider"])  # fmt: skip
    (actual,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    assert actual.shape == (3, 10), key
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4, err_msg=str(key))
