"""The ``xai-compress`` command as a user runs it: a subprocess, configured by environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from xai_compress_client import Dataset, Model

from tests.client.conftest import FAILING, FAST, PRUNE, SLOW, Service

CLI = Path(sys.executable).with_name("xai-compress")


def run(service: Service, *args: str, key: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "XAI_COMPRESS_URL": service.url,
        "XAI_COMPRESS_API_KEY": service.key if key is None else key,
    }
    return subprocess.run(
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def run_json(service: Service, *args: str) -> Any:
    result = run(service, "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def spec_file(tmp_path: Path, spec: dict[str, Any]) -> str:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(spec))
    return str(path)


def test_upload_submit_wait_status_download_list_cancel(
    service: Service, uploaded: tuple[Model, Dataset], tmp_path: Path
) -> None:
    upload = run(service, "upload", "model", str(service.model_file), "--name", "cli model")
    assert upload.returncode == 0, upload.stderr
    assert upload.stdout.startswith("mdl_") and "cli model" in upload.stdout
    dataset = run_json(service, "upload", "dataset", str(service.data_file))
    assert dataset["id"].startswith("ds_") and dataset["status"] == "pending"

    model, data = uploaded
    spec = spec_file(tmp_path, {"steps": PRUNE, **FAST})
    submitted = run(
        service, "submit", "--model", model.id, "--dataset", data.id, "--spec", spec,
        "--wait", "--json",
    )  # fmt: skip
    assert submitted.returncode == 0, submitted.stderr
    job = json.loads(submitted.stdout)
    assert job["status"] == "succeeded" and job["spec"]["steps"][0]["ratio"] == 0.5

    status = run(service, "status", job["id"])
    assert status.returncode == 0 and status.stdout.startswith(f"{job['id']}  succeeded")
    assert "accuracy" in status.stdout and "reduction" in status.stdout
    assert run_json(service, "status", job["id"])["metrics"] == job["metrics"]
    assert run(service, "wait", job["id"]).returncode == 0

    downloaded = run_json(service, "download", job["id"], str(tmp_path / "out"))
    assert sorted(Path(path).name for path in downloaded) == [
        "metrics.json", "model.fp32.onnx", "model.onnx", "model.pt2", "model.xaic",
        "report.html", "scores.safetensors",
    ]  # fmt: skip
    one = run(service, "download", job["id"], str(tmp_path / "one"), "--name", "metrics.json")
    assert one.returncode == 0 and one.stdout.strip() == str(tmp_path / "one" / "metrics.json")

    listed = run_json(service, "list", "jobs", "--limit", "1")
    assert [item["id"] for item in listed] == [job["id"]]
    succeeded = run_json(service, "list", "jobs", "--status", "succeeded")
    assert job["id"] in {item["id"] for item in succeeded}
    models = run(service, "list", "models")
    assert models.returncode == 0 and model.id in models.stdout and "cli model" in models.stdout

    cancelled = run(service, "cancel", job["id"])  # a finished job stays as it is
    assert cancelled.returncode == 0 and cancelled.stdout.startswith(f"{job['id']}  succeeded")


def test_steps_from_flags(service: Service, uploaded: tuple[Model, Dataset]) -> None:
    model, data = uploaded
    job = run_json(
        service, "submit", "--model", model.id, "--dataset", data.id, "--prune-filters", "0.5",
        "--prune-weights", "0.9", "--layers", "fc1", "--quantize-bits", "6", "--criterion", "l1",
    )  # fmt: skip
    assert job["spec"]["criterion"] == "l1"
    assert [(step["type"], step.get("layers")) for step in job["spec"]["steps"]] == [
        ("prune_filters", None), ("prune_weights", ["fc1"]), ("quantize_mixed", None)
    ]  # fmt: skip
    waited = run(service, "wait", job["id"])
    assert waited.returncode == 0 and waited.stdout.startswith(f"{job['id']}  succeeded")


def test_a_failed_job_exits_1(
    service: Service, uploaded: tuple[Model, Dataset], tmp_path: Path
) -> None:
    model, data = uploaded
    spec = spec_file(tmp_path, {**FAILING, **FAST})
    result = run(
        service, "submit", "--model", model.id, "--dataset", data.id, "--spec", spec, "--wait"
    )
    assert result.returncode == 1
    assert "invalid_spec" in result.stderr and "no_such_layer" in result.stderr
    assert " failed" in result.stdout.splitlines()[0]


def test_a_wait_that_times_out_exits_4_and_a_cancelled_job_exits_3(
    service: Service, uploaded: tuple[Model, Dataset], tmp_path: Path
) -> None:
    model, data = uploaded
    spec = spec_file(tmp_path, SLOW)
    job = run_json(service, "submit", "--model", model.id, "--dataset", data.id, "--spec", spec)
    timed_out = run(service, "wait", job["id"], "--timeout", "0.1")
    assert timed_out.returncode == 4, timed_out.stderr
    assert "has not finished" in timed_out.stderr
    assert run(service, "cancel", job["id"]).returncode == 0
    assert run(service, "wait", job["id"]).returncode == 3


def test_api_errors_exit_5_naming_the_code(service: Service) -> None:
    missing = run(service, "status", "job_missing")
    assert missing.returncode == 5 and "not_found" in missing.stderr
    unauthorized = run(service, "list", "jobs", key="xc_wrong")
    assert unauthorized.returncode == 5 and "unauthorized" in unauthorized.stderr


@pytest.mark.parametrize(
    "args",
    [
        "submit --model m --dataset d",  # no steps
        "submit --model m --dataset d --spec {spec} --prune-filters 0.5",
        "submit --model m --dataset d --spec {model}",  # not JSON
        "submit --model m --dataset d --spec missing.json",
        "submit --model m --dataset d --prune-filters 0.5 --layers fc1",
        "list models --status queued",
        "list jobs --limit 0",
        "upload model missing.pt2",
        "upload model {model} --architecture-args [1]",
        "frobnicate",
    ],
)
def test_usage_errors_exit_2(service: Service, tmp_path: Path, args: str) -> None:
    spec = spec_file(tmp_path, {"steps": PRUNE})
    result = run(service, *args.format(spec=spec, model=service.model_file).split())
    assert result.returncode == 2 and "usage:" in result.stderr, result.stderr
