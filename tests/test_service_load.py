"""benchmarks.service_load, run small: the embedded server answers every poll, upload and job
submission of a handful of clients, the job and uploads end well, and the table is written."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow  # minutes: the server starts, and two real jobs run on a shared CPU
def test_a_small_embedded_run_answers_everything_and_writes_its_table(tmp_path: Path) -> None:
    command = [
        sys.executable, "-m", "benchmarks.service_load", "--mode", "embedded", "--pollers", "4",
        "--uploads", "2", "--jobs", "1", "--idle-jobs", "1", "--seconds", "4",
        "--results", str(tmp_path),
    ]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    [stored] = json.loads((tmp_path / "service_load.json").read_text())
    [row] = stored["rows"]
    assert [row[kind]["errors"] for kind in ("poll", "upload", "submit")] == [0, 0, 0]
    assert row["poll"]["ok"] >= 4 and (row["upload"]["ok"], row["submit"]["ok"]) == (2, 1)
    assert (row["jobs_succeeded"], row["uploads_ready"]) == (1, 2)
    [idle] = row["idle_queued_to_running_ms"]
    assert 0 < idle < 60_000
    assert row["cpu_s"]["generator"] > 0 and row["api_peak_rss_mib"] > 50
    assert "| embedded (1 API processes) | 4 (1.0) | " in (tmp_path / "service_load.md").read_text()
