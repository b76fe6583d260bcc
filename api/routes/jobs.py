"""Jobs: submit (idempotently), list, read, cancel, follow events, download artifacts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import RedirectResponse, StreamingResponse
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from api.deps import DispatcherDep, ProjectAloneDep, ProjectDep, SessionDep, SettingsDep, StorageDep
from api.event_wakeups import EventWakeups
from api.routes.lookup import owned
from api.routes.pagination import MAX_LIMIT, page
from api.schemas import ArtifactOut, EventOut, JobCreate, Page, artifact_out, event_out
from core import outbox
from core.dispatch import RUN_JOB
from core.ids import new_id
from core.job_state import TERMINAL, append_event, locked_job, request_cancel
from core.job_view import JobOut, job_out
from core.problems import Problem, not_found
from core.tables import Artifact, DatasetRecord, IdempotencyKey, Job, JobEvent, ModelRecord

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
JobStatus = Literal["queued", "running", "cancelling", "succeeded", "failed", "cancelled"]
MAX_SEQ = 2**63 - 1
"""Event numbers are 64-bit in the database; a larger cursor is refused, not overflowed."""
SSE_KEEPALIVE_SECONDS = 15.0


def _job(session: Session, project_id: str, job_id: str) -> Job:
    return owned(session, Job, job_id, project_id, "job")


def _usable(session: Session, project_id: str, table: Any, record_id: str, kind: str) -> None:
    record = owned(session, table, record_id, project_id, kind)
    if record.status == "invalid":
        raise Problem(
            409, f"{kind}_invalid", f"The {kind} failed validation",
            f"{record_id}: {record.error_code}: {record.error_message}",
        )  # fmt: skip


def _request_hash(body: JobCreate) -> str:
    canonical = json.dumps(body.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _replay(session: Session, project_id: str, key: str, digest: str) -> Job | None:
    remembered = session.get(IdempotencyKey, (project_id, key))
    if remembered is None:
        return None
    if remembered.request_hash != digest:
        raise Problem(
            409, "idempotency_key_reused", "Idempotency-Key reused with another body",
            "This Idempotency-Key was already used for a different request; use a new key.",
        )  # fmt: skip
    return session.get(Job, remembered.job_id)


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    operation_id="createJob",
    summary="Submit a compression job",
    description=(
        "Send an `Idempotency-Key` header to make retries safe: the same key with the same "
        "body returns the same job (header `Idempotent-Replayed: true`); with another body, 409. "
        "A job is kept even when the queue is briefly unreachable: it is dispatched as soon as "
        "the queue is back."
    ),
)
def create_job(
    body: JobCreate,
    request: Request,
    response: Response,
    project_id: ProjectAloneDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    if body.mlflow and body.mlflow.target not in settings.mlflow_targets:
        known = ", ".join(sorted(settings.mlflow_targets)) or "none are configured"
        raise Problem(
            422, "unknown_mlflow_target", "Unknown MLflow target",
            f"mlflow.target {body.mlflow.target!r} is not one of the operator's MLflow targets "
            f"({known}).",
        )  # fmt: skip
    digest = _request_hash(body)
    factory = request.app.state.sessionmaker
    replayed = False
    try:
        with factory() as session, session.begin():
            job = _replay(session, project_id, idempotency_key, digest) if idempotency_key else None
            replayed = job is not None
            job = job or _new_job(session, project_id, body, idempotency_key, digest)
    except IntegrityError:  # a concurrent request with the same key committed first
        with factory() as session:
            job = _replay(session, project_id, idempotency_key or "", digest)
            if job is None:
                raise
            replayed = True
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    if job.status == "queued" and job.dispatched_at is None:
        # a new job, or a replay of one whose first dispatch failed (the client's retry after
        # a broker blip): hand it over now; if the broker is still down, the job is kept and
        # the outbox sweeper dispatches it when it is back (core.outbox)
        outbox.dispatch(factory, dispatcher, RUN_JOB, job.id)
    return job_out(job)


def _new_job(
    session: Session, project_id: str, body: JobCreate, idempotency_key: str | None, digest: str
) -> Job:
    _usable(session, project_id, ModelRecord, body.model_id, "model")
    _usable(session, project_id, DatasetRecord, body.dataset_id, "dataset")
    if body.eval_dataset_id:
        _usable(session, project_id, DatasetRecord, body.eval_dataset_id, "dataset")
    job = Job(
        id=new_id("job"),
        project_id=project_id,
        model_id=body.model_id,
        dataset_id=body.dataset_id,
        eval_dataset_id=body.eval_dataset_id,
        spec=body.model_dump(mode="json", exclude=TARGETS),
        job_metadata=body.metadata,
        mlflow=body.mlflow.model_dump(mode="json") if body.mlflow else None,
    )
    session.add(job)
    session.flush()
    append_event(session, job, "status", {"status": "queued"})
    if idempotency_key:
        session.add(
            IdempotencyKey(
                project_id=project_id, key=idempotency_key, request_hash=digest, job_id=job.id
            )
        )
    return job


TARGETS = {"model_id", "dataset_id", "eval_dataset_id", "metadata", "mlflow"}


@router.get("", response_model=Page[JobOut], operation_id="listJobs")
def list_jobs(
    session: SessionDep,
    project_id: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    status: JobStatus | None = None,
    model_id: str | None = None,
) -> Any:
    statement = select(Job).where(Job.project_id == project_id)
    if status:
        statement = statement.where(Job.status == status)
    if model_id:
        statement = statement.where(Job.model_id == model_id)
    return page(session, statement, Job, after, limit, job_out, Job.project_id == project_id)


@router.get("/{job_id}", response_model=JobOut, operation_id="getJob")
def get_job(job_id: str, session: SessionDep, project_id: ProjectDep) -> Any:
    return job_out(_job(session, project_id, job_id))


@router.post(
    "/{job_id}/cancel", response_model=JobOut, operation_id="cancelJob",
    description="Idempotent. A queued job is cancelled at once; a running one moves to "
    "`cancelling` and stops at its next check; a finished job is returned unchanged.",
)  # fmt: skip
def cancel_job(job_id: str, session: SessionDep, project_id: ProjectDep) -> Any:
    _job(session, project_id, job_id)
    job = locked_job(session, job_id)  # the values after the lock, not those _job read
    request_cancel(session, job)
    return job_out(job)


def _events_after(session: Session, job_id: str, after: int, limit: int) -> list[JobEvent]:
    return list(
        session.scalars(
            select(JobEvent)
            .where(JobEvent.job_id == job_id, JobEvent.seq > after)
            .order_by(JobEvent.seq)
            .limit(limit)
        )
    )


@router.get(
    "/{job_id}/events",
    response_model=Page[EventOut],
    operation_id="listJobEvents",
    description="Append-only feed, oldest first, paged by `after` (an event `seq`). With "
    "`Accept: text/event-stream` the feed is streamed as Server-Sent Events until the job "
    "finishes, or the server stops (resume with `Last-Event-ID`).",
    responses={200: {"content": {"text/event-stream": {}}}},
)
def list_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    project_id: ProjectDep,
    after: Annotated[int, Query(ge=0, le=MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    last_event_id: Annotated[str | None, Header(max_length=19)] = None,
) -> Any:
    # The request's session ends when this function returns; a stream reads in short
    # transactions of its own, so no session is held while it streams.
    _job(session, project_id, job_id)
    events = _events_after(session, job_id, after, limit + 1)
    if "text/event-stream" in request.headers.get("accept", ""):
        resumed = last_event_id and last_event_id.isdigit() and int(last_event_id) <= MAX_SEQ
        start = int(last_event_id) if resumed else after
        return StreamingResponse(
            _stream(request, job_id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    shown = events[:limit]
    return {
        "data": [event_out(event) for event in shown],
        "has_more": len(events) > limit,
        "next_cursor": str(shown[-1].seq) if shown else None,
    }


async def _stream(request: Request, job_id: str, after: int) -> AsyncIterator[bytes]:
    """The feed as Server-Sent Events: read what is new, then wait until a writer's
    notification wakes the stream (Postgres) or the poll interval passes (SQLite, or no
    listener), with a keep-alive comment when the feed is quiet."""
    factory = request.app.state.read_sessionmaker
    wakeups: EventWakeups = request.app.state.event_wakeups
    loop = asyncio.get_running_loop()

    def read(cursor: int) -> tuple[list[JobEvent], bool]:
        with factory() as session:
            events = _events_after(session, job_id, cursor, 500)
            return events, session.get(Job, job_id).status in TERMINAL

    with wakeups.follow(job_id) as woken:
        keep_alive_at = loop.time() + SSE_KEEPALIVE_SECONDS
        while not wakeups.draining and not await request.is_disconnected():
            woken.clear()
            events, finished = await run_in_threadpool(read, after)
            for event in events:
                payload = event_out(event).model_dump_json()
                yield f"id: {event.seq}\nevent: {event.type}\ndata: {payload}\n\n".encode()
                after = event.seq
            if finished and not events:
                return
            if finished:
                continue  # read once more, without waiting: nothing will wake a finished job
            if events:
                keep_alive_at = loop.time() + SSE_KEEPALIVE_SECONDS
            elif loop.time() >= keep_alive_at:
                keep_alive_at = loop.time() + SSE_KEEPALIVE_SECONDS
                yield b": keep-alive\n\n"
            wait = min(wakeups.interval(), keep_alive_at - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), max(wait, 0.0))


@router.get(
    "/{job_id}/artifacts", response_model=list[ArtifactOut], operation_id="listJobArtifacts"
)
def list_artifacts(job_id: str, session: SessionDep, project_id: ProjectDep) -> Any:
    _job(session, project_id, job_id)
    artifacts = session.scalars(
        select(Artifact).where(Artifact.job_id == job_id).order_by(Artifact.name)
    )
    return [artifact_out(artifact) for artifact in artifacts]


@router.get(
    "/{job_id}/artifacts/{name}",
    operation_id="downloadJobArtifact",
    description="Streams the file (local storage) or redirects (307) to a short-lived "
    "presigned URL (S3). `X-Checksum-SHA256` carries the file's hash.",
    responses={200: {"content": {"application/octet-stream": {}}}, 307: {}},
)
def download_artifact(
    job_id: str, name: str, session: SessionDep, project_id: ProjectDep, storage: StorageDep
) -> Response:
    _job(session, project_id, job_id)
    artifact = session.scalar(
        select(Artifact).where(Artifact.job_id == job_id, Artifact.name == name)
    )
    if artifact is None:
        raise not_found("artifact", name)
    headers = {"X-Checksum-SHA256": artifact.sha256}
    url = storage.presigned_url(artifact.storage_key, filename=name)
    if url is not None:
        return RedirectResponse(url, status_code=307, headers=headers)
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    headers["Content-Length"] = str(artifact.size_bytes)
    return StreamingResponse(
        storage.iter_chunks(artifact.storage_key), media_type=artifact.content_type, headers=headers
    )
