"""The hostile corpus (tests/hostile/corpus.py) over HTTP: every case is accepted as an upload
(it is a well-formed request), validated by the worker, and ends ``invalid`` with its stable
code; no payload ran, the refused bytes are gone from storage, and no temporary file is left."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.helpers import leftover_files, settle, upload
from tests.hostile.conftest import corpus, marker
from worker.in_process import InProcessDispatcher


@pytest.fixture
def scratch_tmp(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "tmp"
    folder.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(folder)
    yield folder
    tempfile.tempdir = saved


@pytest.mark.parametrize("name", list(corpus()))
def test_hostile_upload_ends_invalid_with_its_code_and_leaves_nothing(
    client: TestClient, dispatcher: InProcessDispatcher, scratch_tmp: Path, name: str
) -> None:
    case = corpus()[name]
    created = upload(client, case.kind, case.content, case.filename, **case.fields)
    settle(client, dispatcher)
    record = client.get(f"/v1/{case.kind}/{created['id']}").json()
    assert record["status"] == "invalid", record
    assert record["error"]["code"] == case.code, record["error"]
    assert not marker().exists(), "a payload ran"
    storage = client.app.state.settings.resolved_storage_path
    assert not storage.exists() or not [p for p in storage.rglob("*") if p.is_file()]
    assert leftover_files(client, scratch_tmp) == []
