"""Jobs and validations run in a child process under memory and time limits; a child killed
by a limit ends its record with a stable code, and the process that started it stays up."""

from __future__ import annotations

import io
import os
import signal
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.main import create_app
from core.dispatch import RUN_JOB, VALIDATE_DATASET
from core.ids import new_id
from core.keys import create_project
from core.settings import Settings
from core.tables import Artifact, DatasetRecord, Job, JobEvent, ModelRecord
from tests.api.helpers import sign_in, upload, wait_for
from tests.worker.processes import wait_until
from worker import runner, tasks
from worker.in_process import InProcessDispatcher
from worker.resources import Resources, build_resources
from worker.task_process import run_in_child

FAST = {"attribution": {"samples": 64}, "evaluation": {"latency_repeats": 3}}


def _settings(postgres: str, tmp_path: Path, **limits: float) -> Settings:
    return Settings(
        database_url=postgres, redis_url=None, data_dir=tmp_path / "data",
        storage_backend="local", **limits,
    )  # fmt: skip


@contextmanager
def _service(settings: Settings) -> Iterator[tuple[TestClient, Resources]]:
    resources = build_resources(settings)
    dispatcher = InProcessDispatcher(resources).start()
    with TestClient(create_app(settings, dispatcher)) as client:
        sign_in(client, "limits")
        yield client, resources
    dispatcher.stop()


@pytest.fixture
def tight_memory(clean_postgres: str, tmp_path: Path) -> Iterator[tuple[TestClient, Resources]]:
    """Tasks may use 2 GiB of address space (a child forked from the fork server starts near
    1.4 GiB with torch loaded); archives may inflate as much as they like, and decode to 8 GiB."""
    settings = _settings(
        clean_postgres, tmp_path, task_memory_limit_mb=2048, max_compression_ratio=100_000,
        max_decoded_dataset_bytes=8 * 1024**3,
    )  # fmt: skip
    with _service(settings) as service:
        yield service


@pytest.fixture
def short_jobs(clean_postgres: str, tmp_path: Path) -> Iterator[tuple[TestClient, Resources]]:
    """Jobs are asked to stop after 4 s."""
    with _service(_settings(clean_postgres, tmp_path, job_soft_time_limit=4)) as service:
        yield service


def _zeros_npz(samples: int, side: int) -> bytes:
    """A dataset a few hundred KB on the wire that decodes to samples x side x side bytes."""
    buffer = io.BytesIO()
    x = np.zeros((samples, 1, side, side), dtype=np.uint8)
    np.savez_compressed(buffer, x=x, y=np.arange(samples, dtype=np.int64) % 10)
    return buffer.getvalue()


def test_a_dataset_past_the_memory_limit_is_invalid_and_the_api_keeps_answering(
    tight_memory: tuple[TestClient, Resources], digits_npz: bytes
) -> None:
    client, resources = tight_memory
    # 1.5 GiB of uint8 once decoded: inside the intake limits, past the task's memory on its
    # own (1 GiB passed on a quiet machine, where the child starts with less address space)
    hungry = upload(client, "datasets", _zeros_npz(24576, 256), "zeros.npz")
    answered = []
    while (body := client.get(f"/v1/datasets/{hungry['id']}").json())["status"] == "pending":
        started = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        answered.append(time.perf_counter() - started)
        time.sleep(0.05)
    assert (body["status"], body["error"]["code"]) == ("invalid", "resource_limit")
    assert "2048 MiB" in body["error"]["message"]
    assert answered and max(answered) < 2.0  # the API was never held up by the validation
    stored = (resources.settings.data_dir / "objects").rglob("*")
    assert not [path for path in stored if path.is_file()]  # the refused bytes are gone
    # the same service, the same limit: an ordinary dataset validates
    fine = upload(client, "datasets", digits_npz, "digits.npz")
    assert wait_for(client, f"/v1/datasets/{fine['id']}", {"ready", "invalid"})["status"] == (
        "ready"
    )


def test_a_job_past_its_soft_time_limit_fails_with_time_limit(
    short_jobs: tuple[TestClient, Resources], digits_model_pt2: bytes, digits_npz: bytes
) -> None:
    client, _ = short_jobs
    model = upload(client, "models", digits_model_pt2, "digits.pt2")
    dataset = upload(client, "datasets", digits_npz, "digits.npz")
    for path in (f"/v1/models/{model['id']}", f"/v1/datasets/{dataset['id']}"):
        assert wait_for(client, path, {"ready", "invalid"})["status"] == "ready"
    spec = {  # a sweep of eight points with fine-tuning: far more than 4 s of work
        "steps": [{"type": "prune_filters", "ratio": 0.5}, {"type": "finetune", "epochs": 3}],
        "sweep": {"parameter": "ratio", "values": [0.1 * n for n in range(1, 9)]},
        **FAST,
    }
    response = client.post(
        "/v1/jobs", json={"model_id": model["id"], "dataset_id": dataset["id"], **spec}
    )
    assert response.status_code == 201, response.text
    job = response.json()
    done = wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"}, timeout=120)
    assert (done["status"], done["error"]["code"]) == ("failed", "time_limit")


# The Celery pool process forks its child directly; these drive that path with handlers the
# child inherits (a task that is killed, that hangs, that allocates past the limit).


def _killed(resources: Resources, record_id: str) -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


def _hangs(resources: Resources, record_id: str) -> str:
    time.sleep(600)
    return "unreachable"


def _allocates(resources: Resources, record_id: str) -> str:
    blocks = [bytearray(256 * 1024**2) for _ in range(64)]  # 16 GiB, far past the limit
    return str(len(blocks))


@pytest.fixture
def resources(clean_postgres: str, tmp_path: Path) -> Iterator[Resources]:
    resources = build_resources(
        _settings(clean_postgres, tmp_path, task_memory_limit_mb=3072, job_time_limit=3)
    )
    yield resources
    resources.close()


def _records(resources: Resources, status: str) -> tuple[str, str]:
    """A project's model and dataset rows (the children below never read the files)."""
    with resources.sessionmaker() as session, session.begin():
        project = create_project(session, f"celery-path-{status}")
        ids = []
        for table, kind in ((ModelRecord, "model"), (DatasetRecord, "dataset")):
            key = f"projects/{project.id}/{kind}/upload.bin"
            resources.storage.put_bytes(key, b"x")
            record = table(
                id=new_id(kind), name="upload", project_id=project.id, filename="upload.bin",
                storage_key=key, size_bytes=1, sha256="0" * 64, status=status,
            )  # fmt: skip
            session.add(record)
            ids.append(record.id)
    return ids[0], ids[1]


def _queued_job(resources: Resources) -> str:
    """A queued job on a ready digits model and dataset; its id."""
    model_id, dataset_id = _records(resources, "ready")
    with resources.sessionmaker() as session, session.begin():
        project_id = session.get(ModelRecord, model_id).project_id
        job = Job(
            id=new_id("job"), project_id=project_id, model_id=model_id, dataset_id=dataset_id,
            spec={},
        )  # fmt: skip
        session.add(job)
    return job.id


@pytest.fixture
def digits_job(resources: Resources) -> str:
    return _queued_job(resources)


@pytest.mark.parametrize(
    ("handler", "code"),
    [(_killed, "resource_limit"), (_allocates, "resource_limit")],
    ids=["killed by the kernel", "allocates past the limit"],
)
def test_a_validation_child_that_dies_is_recorded_invalid_and_its_bytes_deleted(
    resources: Resources, monkeypatch: pytest.MonkeyPatch, handler, code: str
) -> None:
    monkeypatch.setitem(tasks.HANDLERS, VALIDATE_DATASET, handler)
    _, record_id = _records(resources, "pending")
    assert run_in_child(resources, VALIDATE_DATASET, record_id, start="fork") == code
    with resources.sessionmaker() as session:
        record = session.get(DatasetRecord, record_id)
        assert (record.status, record.error_code) == ("invalid", code)
    assert not resources.storage.exists(record.storage_key)


def test_a_job_child_past_the_hard_time_limit_is_killed_and_failed(
    resources: Resources, monkeypatch: pytest.MonkeyPatch, digits_job: str
) -> None:
    monkeypatch.setitem(tasks.HANDLERS, RUN_JOB, _hangs)
    started = time.monotonic()
    assert run_in_child(resources, RUN_JOB, digits_job, start="fork") == "time_limit"
    assert 3 <= time.monotonic() - started < 20
    with resources.sessionmaker() as session:
        job = session.get(Job, digits_job)
        assert (job.status, job.error_code) == ("failed", "time_limit")
        assert "3 s" in job.error_message


def _ask_back_once_listening(after: float = 0.3) -> None:
    """What the Celery main process does after the grace: SIGTERM to this (the pool) process,
    sent only once ``run_in_child`` listens for it (a SIGTERM before would end pytest)."""
    wait_until(lambda: signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, 30, "a handler")
    time.sleep(after)  # the child is at work
    os.kill(os.getpid(), signal.SIGTERM)


def _stores_then_works_on(resources: Resources, job_id: str, workdir: Path, progress) -> None:
    """The job's work, standing in for compress(): one artifact stored, then a long wait."""
    (workdir / "metrics.json").write_text("{}")
    runner._store_artifacts(resources, job_id, progress.attempt, [workdir / "metrics.json"])
    time.sleep(600)


def test_a_child_asked_to_stop_hands_its_job_back_fenced_and_clean(
    clean_postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool process's side of a worker shutdown (worker.shutdown): SIGTERM while it waits
    for the child; the child's runner writes the job back to queued on its attempt, removes
    the artifact row and object the attempt stored, and exits; the parent returns at once."""
    resources = build_resources(_settings(clean_postgres, tmp_path, job_time_limit=120))
    monkeypatch.setattr(runner, "_execute", _stores_then_works_on)  # the forked child's too
    job_id = _queued_job(resources)

    def stored() -> bool:
        with resources.sessionmaker() as session:
            return session.scalar(select(Artifact).where(Artifact.job_id == job_id)) is not None

    def ask_back() -> None:
        wait_until(stored, 30, "the attempt's first artifact")
        _ask_back_once_listening(after=0)

    threading.Thread(target=ask_back, daemon=True).start()
    started = time.monotonic()
    try:
        assert run_in_child(resources, RUN_JOB, job_id, start="fork") == "handed_back"
        assert time.monotonic() - started < 30
        with resources.sessionmaker() as session:
            row = session.get(Job, job_id)
            assert (row.status, row.attempts, row.error_code) == ("queued", 1, None)
            assert row.dispatched_at is None  # due for the outbox
            assert session.scalars(select(Artifact).where(Artifact.job_id == job_id)).all() == []
            statuses = session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "status")
            ).all()
        assert [s["status"] for s in statuses] == ["running", "queued"]
        project_id = row.project_id
        jobs_dir = resources.settings.resolved_storage_path / f"projects/{project_id}/jobs"
        assert not list(jobs_dir.rglob("*.json"))  # the stored object is gone too
    finally:
        resources.close()


def _pauses_after_claim(marker: Path) -> tuple[str, Callable[..., int | None]]:
    claim = runner._claim

    def paused(resources: Resources, job_id: str) -> int | None:
        attempt = claim(resources, job_id)
        marker.touch()
        time.sleep(1.5)  # a request for the job back comes now
        return attempt

    return "_claim", paused


def _pauses_in_terminal_write(marker: Path) -> tuple[str, Callable[..., str]]:
    fenced_write = runner._fenced_write

    def paused(resources: Resources, job_id: str, attempt: int, write) -> str:
        if write.__name__ == "succeed":
            marker.touch()
            time.sleep(1.5)  # a request for the job back comes now
        return fenced_write(resources, job_id, attempt, write)

    return "_fenced_write", paused


@pytest.mark.parametrize(
    ("pause", "outcome", "statuses"),
    [
        (_pauses_after_claim, "handed_back", ["running", "queued"]),
        (_pauses_in_terminal_write, "done", ["running", "succeeded"]),
    ],
)
def test_a_request_for_the_job_back_waits_for_the_claim_and_the_terminal_write(
    clean_postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    pause, outcome: str, statuses: list[str],
) -> None:  # fmt: skip
    """worker.shutdown.hand_back_gate: SIGTERM just after the claim committed waits, and is
    raised when the work begins (the job goes back to queued on its attempt); SIGTERM during
    the terminal write waits and is dropped (the job ends succeeded). Raised inside either
    write, it used to leave the job running with a fresh heartbeat, for the reaper."""
    resources = build_resources(_settings(clean_postgres, tmp_path, job_time_limit=120))
    marker = tmp_path / "paused"
    monkeypatch.setattr(runner, *pause(marker))
    monkeypatch.setattr(runner, "_execute", lambda *args: {"note": "stand-in"})
    job_id = _queued_job(resources)

    def ask_back() -> None:
        wait_until(marker.exists, 30, "the pause")
        _ask_back_once_listening(after=0)

    threading.Thread(target=ask_back, daemon=True).start()
    try:
        assert run_in_child(resources, RUN_JOB, job_id, start="fork") == outcome
        with resources.sessionmaker() as session:
            row = session.get(Job, job_id)
            events = session.scalars(
                select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.type == "status")
            ).all()
        assert (row.status, row.attempts) == (statuses[-1], 1)
        assert [e["status"] for e in events] == statuses
    finally:
        resources.close()


def _stop_dropped_in_a_callback(seconds: float) -> None:
    """Wait ``seconds`` inside a weakref callback, where an exception from a signal handler
    is dropped by Python ("Exception ignored in"), as when gc runs while a stop arrives."""

    class Held:
        pass

    held = Held()
    reference = weakref.ref(held, lambda _: time.sleep(seconds))
    del held  # the callback runs now, and the stop signal arrives inside it
    assert reference() is None


def _drops_its_hand_back(resources: Resources, record_id: str) -> str:
    _stop_dropped_in_a_callback(5.0)  # SIGTERM ends it after 0.3 s (and is dropped)
    time.sleep(600)
    return "unreachable"


@pytest.mark.parametrize(
    "handler", [_hangs, _drops_its_hand_back], ids=["at work", "stop dropped in a callback"]
)
def test_a_validation_asked_to_stop_is_handed_back_untouched(
    resources: Resources, monkeypatch: pytest.MonkeyPatch, handler: Callable[..., str]
) -> None:
    """A validation has nothing to write back: stopped, its upload stays pending with its
    bytes, for the outbox to dispatch again (the Celery task does at once). A stop Python
    drops is asked for again (``worker.dropped_stops``): without that, the child would sleep
    on until the pool process kills it ``HAND_BACK_SECONDS`` later (``killed``)."""
    monkeypatch.setitem(tasks.HANDLERS, VALIDATE_DATASET, handler)
    _, record_id = _records(resources, "pending")
    threading.Thread(target=_ask_back_once_listening, daemon=True).start()
    started = time.monotonic()
    assert run_in_child(resources, VALIDATE_DATASET, record_id, start="fork") == "handed_back"
    assert time.monotonic() - started < 10
    with resources.sessionmaker() as session:
        record = session.get(DatasetRecord, record_id)
        assert (record.status, record.error_code) == ("pending", None)
    assert resources.storage.exists(record.storage_key)


def _drops_its_time_limit(resources: Resources, job_id: str, workdir: Path, progress) -> None:
    _stop_dropped_in_a_callback(5.0)  # the 1 s soft limit ends it (and is dropped)
    time.sleep(600)


def test_a_time_limit_dropped_in_a_callback_is_raised_again(
    clean_postgres: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The soft limit's exception raised inside a weakref callback is dropped by Python; the
    child asks again, so the job fails at the soft limit, not at the hard one."""
    settings = _settings(clean_postgres, tmp_path, job_soft_time_limit=1, job_time_limit=20)
    resources = build_resources(settings)
    monkeypatch.setattr(runner, "_execute", _drops_its_time_limit)  # the forked child's too
    job_id = _queued_job(resources)
    started = time.monotonic()
    try:
        assert run_in_child(resources, RUN_JOB, job_id, start="fork") == "done"
        assert 1.0 <= time.monotonic() - started < 10
        with resources.sessionmaker() as session:
            job = session.get(Job, job_id)
            assert (job.status, job.error_code, job.error_message) == (
                "failed", "time_limit", "The job ran past 1 s.",
            )  # fmt: skip
    finally:
        resources.close()
