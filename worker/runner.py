"""Run one compression job: claim it, load, compress, export, store, record.

The database row is the source of truth: a task carries only the job id, so a redelivered
task finds the job's real state and either skips it (finished, or alive elsewhere) or runs
it again. Any failure ends as ``failed`` with a stable code and a message a user can act on;
the traceback goes to the log, never to the user.
"""

from __future__ import annotations

import hashlib
import json
import logging
import socket
import tempfile
import time
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

from safetensors.torch import save_file
from sqlalchemy import select
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session

from compression import compress, load_dataset, load_model
from compression.data import Dataset, fit_to_model
from compression.errors import Cancelled, CompressionError, TimeLimitReached, is_out_of_memory
from compression.io import LoadedModel, export_pt2
from compression.pipeline import Result
from compression.report import relevance_samples, render_report
from compression.runtime import Runtime
from core.ids import new_id
from core.job_state import (
    MAX_ATTEMPTS,
    TERMINAL,
    AttemptSuperseded,
    append_event,
    attempt_row,
    fail,
    locked_job,
    set_status,
)
from core.storage import StorageUnavailable
from core.tables import Artifact, DatasetRecord, Job, ModelRecord, utcnow
from jobspec import Spec
from worker.job_progress import Heartbeat, JobProgress, heartbeat_interval
from worker.mlflow_logging import log_job
from worker.resources import Resources, fetch, job_runtime
from worker.shutdown import HandBack, hand_back_gate

log = logging.getLogger("worker.runner")
T = TypeVar("T")
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeout)
TRANSIENT = (StorageUnavailable, *DATABASE_DOWN)
"""Errors of the service's own dependencies: the attempt is retried, the job is not failed."""

CONTENT_TYPES = {
    "model.xaic": "application/octet-stream",
    "model.onnx": "application/octet-stream",
    "model.fp32.onnx": "application/octet-stream",
    "model.int8.onnx": "application/octet-stream",
    "model.pt2": "application/zip",
    "metrics.json": "application/json",
    "scores.safetensors": "application/octet-stream",
    "report.html": "text/html; charset=utf-8",
}


def run_job(resources: Resources, job_id: str) -> str:
    """Run the job if it is runnable; return its final status (or why it was skipped). A
    worker's request for the job back interrupts the work only, never the claim or the
    terminal write (``hand_back_gate``)."""
    with hand_back_gate(False):
        return _run_claimed(resources, job_id)


def _run_claimed(resources: Resources, job_id: str) -> str:
    attempt = _claim(resources, job_id)
    if attempt is None:
        return "skipped"
    progress = JobProgress(resources.sessionmaker, job_id, attempt, resources.read_sessionmaker)
    beat = heartbeat_interval(resources.settings.stale_job_seconds)
    try:
        with (
            Heartbeat(resources.sessionmaker, job_id, progress, beat),
            tempfile.TemporaryDirectory(prefix=f"{job_id}-") as workdir,
            hand_back_gate(True),
        ):
            metrics = _execute(resources, job_id, Path(workdir), progress)
    except AttemptSuperseded:
        log.warning("attempt %d of %s was superseded; it stopped", attempt, job_id)
        return "superseded"
    except HandBack:
        return _hand_back(resources, job_id, attempt)
    except TRANSIENT as exc:
        return _requeue(resources, job_id, attempt, exc)
    except Cancelled:
        return _end(resources, job_id, attempt, "cancelled")
    except CompressionError as exc:
        return _end(resources, job_id, attempt, "failed", exc.code, exc.message)
    except TimeLimitReached:
        limit = resources.settings.job_soft_time_limit
        message = f"The job ran past {limit} s."
        return _end(resources, job_id, attempt, "failed", "time_limit", message)
    except Exception as exc:
        if is_out_of_memory(exc):
            limit = resources.settings.task_memory_limit_mb
            message = f"The job needed more than the {limit} MiB of memory a task may use."
            return _end(resources, job_id, attempt, "failed", "resource_limit", message)
        log.exception("job %s failed unexpectedly", job_id)
        message = f"The job failed unexpectedly ({type(exc).__name__}); the worker log has details."
        return _end(resources, job_id, attempt, "failed", "internal_error", message)

    def succeed(session: Session, job: Job) -> str:
        job.metrics, job.progress, job.stage = metrics, 1.0, None
        set_status(session, job, "succeeded")  # its webhook deliveries go out with the sender
        return "succeeded"

    return _fenced_write(resources, job_id, attempt, succeed)


def _fenced_write(
    resources: Resources, job_id: str, attempt: int, write: Callable[[Session, Job], str]
) -> str:
    """Run ``write`` on the job's locked row if ``attempt`` still owns it ("superseded" if
    not), in one transaction, waiting for a database that is away (``_waiting``)."""

    def transaction() -> str:
        with resources.sessionmaker() as session, session.begin():
            return write(session, attempt_row(session, job_id, attempt))

    try:
        return _waiting(resources, job_id, transaction)
    except AttemptSuperseded:
        log.warning("attempt %d of %s was superseded; nothing recorded", attempt, job_id)
        return "superseded"


def _read(resources: Resources, job_id: str, read: Callable[[Session], T]) -> T:
    """A read of the job's rows, waiting for a database that is away (``_waiting``)."""

    def transaction() -> T:
        with resources.read_sessionmaker() as session:
            return read(session)

    return _waiting(resources, job_id, transaction)


def _waiting(resources: Resources, job_id: str, action: Callable[[], T]) -> T:
    """Run ``action``, retrying while the database is away, up to ``database_retry_seconds``:
    a short outage in the middle or at the end of a long job costs nothing."""
    deadline = time.monotonic() + resources.settings.database_retry_seconds
    delay = 0.5
    while True:
        try:
            return action()
        except DATABASE_DOWN as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("job %s waits for the database: %s", job_id, exc)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _requeue(resources: Resources, job_id: str, attempt: int, exc: Exception) -> str:
    """A dependency failed (storage, the database), not the job: give the job back to the
    queue for another attempt (the outbox sweeper dispatches it), or fail it once the attempts
    are spent."""
    log.warning("attempt %d of %s met an unavailable dependency: %s", attempt, job_id, exc)
    dependency = "storage" if isinstance(exc, StorageUnavailable) else "database"

    def requeue(session: Session, job: Job) -> str:
        if job.attempts >= MAX_ATTEMPTS:
            message = f"The service's {dependency} was unavailable in {job.attempts} attempts."
            fail(session, job, f"{dependency}_unavailable", message)
            return "failed"
        set_status(session, job, "queued", reason=f"the {dependency} was unavailable; retrying")
        job.dispatched_at = None  # due for the outbox sweeper
        return "requeued"

    return _fenced_write(resources, job_id, attempt, requeue)


def _hand_back(resources: Resources, job_id: str, attempt: int) -> str:
    """The worker is shutting down: give the job back to the queue, to be dispatched again
    through the outbox, and remove what this attempt stored, so that a waiting job shows no
    part of a result. A job being cancelled is cancelled instead. The attempt keeps its number
    (the fence); the claim still gives up after ``MAX_ATTEMPTS``."""
    project: list[str] = []

    def hand_back(session: Session, job: Job) -> str:
        prefix = _attempt_prefix(job.project_id, job_id, attempt) + "/"
        for artifact in session.scalars(select(Artifact).where(Artifact.job_id == job_id)):
            if artifact.storage_key.startswith(prefix):
                session.delete(artifact)
        project[:] = [job.project_id]
        if job.status == "cancelling":
            set_status(session, job, "cancelled", reason="cancelled while its worker shut down")
            return "cancelled"
        set_status(session, job, "queued", reason="its worker shut down; handed back")
        job.dispatched_at = None  # due for the outbox until a dispatch succeeds
        return "handed_back"

    outcome = _fenced_write(resources, job_id, attempt, hand_back)
    if project:  # after the commit: no record points at these objects any more
        _forget_attempts(resources, project[0], job_id, [attempt])
    log.warning("attempt %d of %s: %s (the worker is shutting down)", attempt, job_id, outcome)
    return outcome


def _claim(resources: Resources, job_id: str) -> int | None:
    """Take the job for a new attempt; return the attempt's number, or None to skip it."""
    stale = utcnow() - timedelta(seconds=resources.settings.stale_job_seconds)
    with resources.sessionmaker() as session, session.begin():
        job = locked_job(session, job_id)
        if job is None or job.status in TERMINAL:
            return None
        if job.status == "cancelling":
            set_status(session, job, "cancelled", reason="cancelled while it was being retried")
            return None
        if job.status == "running" and job.heartbeat_at and job.heartbeat_at > stale:
            return None  # alive on another worker: a duplicate delivery
        if job.attempts >= MAX_ATTEMPTS:  # a redelivery after its worker died, once too often
            fail(
                session, job, "worker_lost",
                f"The worker running this job stopped {job.attempts} times; giving up.",
            )  # fmt: skip
            return None
        job.attempts += 1
        job.worker = socket.gethostname()
        job.heartbeat_at = utcnow()
        job.error_code = job.error_message = None
        set_status(session, job, "running", attempt=job.attempts, worker=job.worker)
        return job.attempts


def _end(
    resources: Resources, job_id: str, attempt: int, status: str, code: str = "", message: str = ""
) -> str:
    """The attempt's terminal write, if the attempt still owns the job."""

    def end(session: Session, job: Job) -> str:
        if status == "failed":
            fail(session, job, code, message)
        else:
            set_status(session, job, status)
        return status

    return _fenced_write(resources, job_id, attempt, end)


def _execute(
    resources: Resources, job_id: str, workdir: Path, progress: JobProgress
) -> dict[str, Any]:
    """Run the job inside its runtime: threads and GPU memory limit for the job only, GPU
    memory handed back when it ends (a worker runs many jobs)."""
    runtime = job_runtime(resources.settings)
    with runtime.activated():
        progress.note("runtime", runtime.describe())
        return _compress(resources, job_id, workdir, progress, runtime)


def _compress(
    resources: Resources, job_id: str, workdir: Path, progress: JobProgress, runtime: Runtime
) -> dict[str, Any]:
    progress.enter("loading", 0.0, 0.05)

    def records(session: Session) -> tuple[Job, Any, Any, Any]:
        job = session.get(Job, job_id)
        eval_id = job.eval_dataset_id
        return (
            job,
            session.get(ModelRecord, job.model_id),
            session.get(DatasetRecord, job.dataset_id),
            session.get(DatasetRecord, eval_id) if eval_id else None,
        )

    job, model_record, data_record, eval_record = _read(resources, job_id, records)
    spec = Spec.model_validate(job.spec)
    model = load_model(
        str(fetch(resources, model_record, workdir)),
        architecture=model_record.architecture,
        architecture_args=model_record.architecture_args,
        limits=resources.limits,
    )
    options = spec.preprocessing
    data = load_dataset(
        str(fetch(resources, data_record, workdir)), model.input_shape, resources.limits,
        preprocessing=options,
    )  # fmt: skip
    eval_data = (
        load_dataset(
            str(fetch(resources, eval_record, workdir)),
            model.input_shape,
            resources.limits,
            preprocessing=options,
        )
        if eval_record
        else None
    )
    progress.span = (0.05, 0.9)
    out = workdir / "out"
    out.mkdir()
    result = compress(
        model, data, spec, eval_data=eval_data, packed_path=out / "model.xaic",
        onnx_dir=out, progress=progress.engine_callback, should_cancel=progress.should_cancel,
        runtime=runtime, events=progress.note,
    )  # fmt: skip
    progress.enter("exporting", 0.9, 1.0)
    metrics = _export(resources, job_id, out, result, progress)
    progress.update("exporting", 0.75, 0.75)
    shown = eval_data if eval_data is not None else data
    report = _report(job_id, metrics, spec, model, result, shown)
    (out / "report.html").write_text(report, encoding="utf-8")
    _store_artifacts(resources, job_id, progress.attempt, sorted(out.iterdir()))
    return metrics


def _report(
    job_id: str, metrics: dict[str, Any], spec: Spec, model: LoadedModel, result: Result,
    data: Dataset,
) -> str:  # fmt: skip
    """report.html: the stored metrics drawn, with input relevance of a few ``data`` samples
    in the original and the compressed model (same reference and target as the job)."""
    samples = relevance_samples(
        model.module, result.model.module,
        fit_to_model(data, model.input_shape, model.num_classes),
        baseline=spec.attribution.baseline, target=spec.attribution.deeplift_target,
    )  # fmt: skip
    title = f"Compression report: {job_id}"
    return render_report(metrics, samples, title=title, spec=spec.model_dump(mode="json"))


def _export(
    resources: Resources, job_id: str, out: Path, result: Result, progress: JobProgress
) -> dict[str, Any]:
    """Write .pt2, scores and metrics beside the packed and ONNX files compress() left in
    ``out``."""
    module, example = result.model.module, result.model.example_input()
    export_pt2(module, example, out / "model.pt2")
    progress.update("exporting", 0.5, 0.5)
    metrics = dict(result.metrics)
    packed = {"bytes": metrics["after"]["packed_bytes"], "format": "xaic"}
    metrics["export"] = {"onnx": metrics.pop("onnx"), "packed": packed}
    tensors = {
        f"scoring{index}.{layer}.{part}": tensor.contiguous()
        for index, scores in enumerate(result.scores)
        for layer, score in scores.items()
        for part, tensor in (("channels", score.channels), ("weights", score.weights))
        if tensor is not None
    }
    if tensors:
        save_file(tensors, str(out / "scores.safetensors"))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    job = _read(resources, job_id, lambda session: session.get(Job, job_id))
    target, spec = job.mlflow, job.spec
    if target:
        servers = resources.settings.mlflow_targets
        metrics["mlflow"] = log_job(servers, target, job_id, spec, metrics, out)
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def _store_artifacts(resources: Resources, job_id: str, attempt: int, paths: list[Path]) -> None:
    """Store the attempt's files under keys of its own, then record them all in one fenced
    transaction, so the job lists one attempt's whole set or none of it.

    When a write fails (the store is down) or the attempt was superseded, what the attempt
    stored is deleted again, as far as the store can be reached; once a set is recorded, the
    objects of every earlier attempt go (including what a store down for deletes kept), so the
    bucket ends holding the recorded set and nothing else.
    """
    project_id = _read(resources, job_id, lambda session: session.get(Job, job_id).project_id)
    files = [(path, path.stat().st_size, _sha256(path)) for path in paths]
    key = f"{_attempt_prefix(project_id, job_id, attempt)}/{{}}".format

    def record(session: Session, job: Job) -> str:
        for old in session.scalars(select(Artifact).where(Artifact.job_id == job_id)):
            session.delete(old)  # a retried job replaces what an earlier attempt recorded
        session.flush()
        for path, size, digest in files:
            session.add(
                Artifact(
                    id=new_id("artifact"),
                    job_id=job_id,
                    name=path.name,
                    storage_key=key(path.name),
                    content_type=CONTENT_TYPES[path.name],
                    size_bytes=size,
                    sha256=digest,
                )
            )
            append_event(session, job, "artifact", {"name": path.name, "size_bytes": size})
        return "stored"

    try:
        for path, _, _ in files:  # a write that failed yet landed goes with the prefix below
            resources.storage.put_file(key(path.name), path)
        outcome = _fenced_write(resources, job_id, attempt, record)
    except BaseException:
        _forget_attempts(resources, project_id, job_id, [attempt])  # no object without its row
        raise
    if outcome == "superseded":
        _forget_attempts(resources, project_id, job_id, [attempt])
        raise AttemptSuperseded(job_id, attempt)
    _forget_attempts(resources, project_id, job_id, range(1, attempt))


def _attempt_prefix(project_id: str, job_id: str, attempt: int) -> str:
    return f"projects/{project_id}/jobs/{job_id}/attempt-{attempt}"


def _forget_attempts(
    resources: Resources, project_id: str, job_id: str, attempts: Iterable[int]
) -> None:
    """Delete the objects of these attempts; a store that cannot delete now is logged, not
    raised (the caller's own outcome stands, and the next attempt to record a set retries)."""
    for attempt in attempts:
        prefix = _attempt_prefix(project_id, job_id, attempt)
        try:
            resources.storage.delete_prefix(prefix)
        except StorageUnavailable as exc:
            log.warning("could not delete %s yet: %s", prefix, exc)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
