"""Routes for uploaded files: models and datasets share one shape, built by one factory.

Uploads are streamed to storage, recorded as ``pending`` and validated by a worker task
(loading a model needs torch, which the API process never imports).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel
from sqlalchemy import exists, or_, select
from starlette.concurrency import run_in_threadpool

from api.deps import DispatcherDep, ProjectDep, SessionDep, SettingsDep, StorageDep
from api.multipart import receive_upload
from api.routes.lookup import owned
from api.routes.pagination import MAX_LIMIT, page
from api.schemas import DatasetOut, ModelOut, Page, dataset_out, model_out
from core.dispatch import VALIDATE_DATASET, VALIDATE_MODEL
from core.ids import new_id
from core.job_state import ACTIVE
from core.problems import Problem
from core.settings import Settings
from core.tables import DatasetRecord, Job, ModelRecord, utcnow


@dataclass(frozen=True)
class UploadKind:
    name: str  # "model" | "dataset"
    plural: str
    record: type[ModelRecord] | type[DatasetRecord]
    out: Callable[[Any], BaseModel]
    schema: type[BaseModel]
    task: str
    limit: Callable[[Settings], int]
    extra: Callable[[dict[str, str]], dict[str, Any]]
    job_columns: tuple[str, ...]


def _model_fields(fields: dict[str, str]) -> dict[str, Any]:
    architecture = fields.get("architecture") or None
    raw_args = fields.get("architecture_args") or ""
    try:
        args = json.loads(raw_args) if raw_args else None
    except json.JSONDecodeError as exc:
        raise Problem(422, "validation_error", "architecture_args is not JSON", str(exc)) from exc
    if args is not None and not isinstance(args, dict):
        raise Problem(422, "validation_error", "architecture_args must be a JSON object")
    return {"architecture": architecture, "architecture_args": args}


MODEL = UploadKind(
    "model", "models", ModelRecord, model_out, ModelOut, VALIDATE_MODEL,
    lambda s: s.max_model_bytes, _model_fields, ("model_id",),
)  # fmt: skip
DATASET = UploadKind(
    "dataset", "datasets", DatasetRecord, dataset_out, DatasetOut, VALIDATE_DATASET,
    lambda s: s.max_dataset_bytes, lambda fields: {}, ("dataset_id", "eval_dataset_id"),
)  # fmt: skip


def upload_router(kind: UploadKind) -> APIRouter:
    router = APIRouter(prefix=f"/v1/{kind.plural}", tags=[kind.plural])
    record_type = kind.record
    title = kind.name.capitalize()

    def get_record(session: Any, project_id: str, record_id: str) -> Any:
        return owned(session, record_type, record_id, project_id, kind.name)

    @router.post(
        "",
        status_code=201,
        response_model=kind.schema,
        operation_id=f"create{title}",
        summary=f"Upload a {kind.name}",
        description=(
            "multipart/form-data with the file in field `file`; optional `name`"
            + (", `architecture` and `architecture_args` (JSON)" if kind is MODEL else "")
            + ". Streamed to storage; validated asynchronously (status pending -> ready|invalid)."
        ),
    )
    async def create(
        request: Request,
        project_id: ProjectDep,
        settings: SettingsDep,
        storage: StorageDep,
        dispatcher: DispatcherDep,
    ) -> Any:
        upload = await receive_upload(request, kind.limit(settings))
        extra = kind.extra(upload.fields)
        record_id = new_id(kind.name)
        key = f"projects/{project_id}/{kind.plural}/{record_id}/{upload.filename}"
        try:
            await run_in_threadpool(storage.put_file, key, upload.path)
        finally:
            upload.path.unlink(missing_ok=True)
        record = record_type(
            id=record_id,
            project_id=project_id,
            name=upload.fields.get("name") or upload.filename,
            filename=upload.filename,
            storage_key=key,
            size_bytes=upload.size,
            sha256=upload.sha256,
            **extra,
        )

        def save() -> None:
            with request.app.state.sessionmaker() as session, session.begin():
                session.add(record)

        await run_in_threadpool(save)
        dispatcher.submit(kind.task, record_id)
        return kind.out(record)

    @router.get("", response_model=Page[kind.schema], operation_id=f"list{title}s")
    def list_records(
        session: SessionDep,
        project_id: ProjectDep,
        after: str | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
    ) -> Any:
        statement = select(record_type).where(
            record_type.project_id == project_id, record_type.deleted_at.is_(None)
        )
        return page(session, statement, record_type, after, limit, kind.out)

    @router.get("/{record_id}", response_model=kind.schema, operation_id=f"get{title}")
    def get(record_id: str, session: SessionDep, project_id: ProjectDep) -> Any:
        return kind.out(get_record(session, project_id, record_id))

    @router.delete(
        "/{record_id}", status_code=204, operation_id=f"delete{title}",
        description="Refused (409) while an unfinished job uses it.",
    )  # fmt: skip
    def delete(
        record_id: str, session: SessionDep, project_id: ProjectDep, storage: StorageDep
    ) -> Response:
        record = get_record(session, project_id, record_id)
        in_use = session.scalar(
            select(
                exists().where(
                    or_(*(getattr(Job, column) == record_id for column in kind.job_columns)),
                    Job.status.in_(ACTIVE),
                )
            )
        )
        if in_use:
            raise Problem(
                409, f"{kind.name}_in_use", f"{title} in use",
                f"An unfinished job uses {record_id}; cancel it or wait for it to finish.",
            )  # fmt: skip
        record.deleted_at = utcnow()
        storage.delete(record.storage_key)
        return Response(status_code=204)

    return router
