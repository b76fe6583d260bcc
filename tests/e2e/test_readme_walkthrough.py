"""The README's curl walk-through works exactly as written, against `make run`'s server."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import onnxruntime
import pytest

from tests.conftest import ROOT
from tests.e2e.server import EmbeddedServer


def _block(heading: str, language: str) -> str:
    """The first ``language`` code block after ``heading`` in the README."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split(heading, 1)[1]
    return re.search(rf"```{language}\n(.*?)```", section, re.S).group(1)


def _tour_script() -> str:
    return _block("## A five-minute tour over HTTP", "sh")


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def test_the_readme_tour_runs_as_written(tmp_path: Path) -> None:
    if not _port_free(8000):
        pytest.fail("port 8000 is taken; the README tour talks to 127.0.0.1:8000")
    (tmp_path / ".venv").symlink_to(ROOT / ".venv")
    server = EmbeddedServer(tmp_path, 8000)
    try:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _tour_script()],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr + result.stdout + server.log.read_text()
        env = {
            **os.environ,
            "XAI_COMPRESS_API_KEY": (tmp_path / "data" / "api-key").read_text().strip(),
        }
        python = str(ROOT / ".venv" / "bin" / "python")
        sdk = subprocess.run(
            [python, "-c", _block("### The same from Python", "python")],
            cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env,
        )  # fmt: skip
        cli = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", _block("### The same from Python", "sh")],
            cwd=tmp_path, capture_output=True, text=True, timeout=600,
        )  # fmt: skip
    finally:
        server.stop()
    assert sdk.returncode == 0, sdk.stderr + sdk.stdout
    status, accuracy, size = sdk.stdout.splitlines()[0].split()
    assert status == "succeeded" and 0.5 < float(accuracy) <= 1 and float(size) > 2
    assert sorted(sdk.stdout.splitlines()[1:]) == [
        "metrics.json", "model.fp32.onnx", "model.onnx", "model.pt2", "model.xaic",
        "report.html", "scores.safetensors",
    ]  # fmt: skip
    assert cli.returncode == 0, cli.stderr + cli.stdout
    assert sorted(p.name for p in (tmp_path / "cli-out").iterdir()) == sorted(
        p.name for p in (tmp_path / "sdk-out").iterdir()
    )
    assert "succeeded" in cli.stdout
    assert "API key (project 'default')" in server.log.read_text()

    summary = json.loads(
        result.stdout[result.stdout.rindex('{\n  "status"') :].split("\n}\n")[0] + "\n}"
    )
    assert summary["status"] == "succeeded" and summary["error"] is None
    assert summary["before"] > 0.9 and 0 <= summary["after"] <= 1
    assert summary["reduction"]["macs"] > 1.5
    listing = [
        line.split()
        for line in result.stdout.splitlines()
        if line.startswith(("model.", "metrics.", "report.", "scores."))
    ]
    assert [name for name, _, _ in listing] == [
        "metrics.json", "model.fp32.onnx", "model.onnx", "model.pt2", "model.xaic",
        "report.html", "scores.safetensors",
    ]  # fmt: skip
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"))
    assert session.get_inputs()[0].shape[1:] == [1, 8, 8]
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["after"]["accuracy"] == summary["after"]
    )
