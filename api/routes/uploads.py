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

from api.deps import DispatcherDep, ProjectAloneDep, ProjectDep, SessionDep, SettingsDep, StorageDep
from api.multipart import MAX_FIELD_BYTES, MAX_FIELDS, receive_upload
from api.routes.lookup import owned
from api.routes.pagination import MAX_LIMIT, page
from api.schemas import DatasetOut, ModelOut, Page, dataset_out, model_out, problem_responses
from core import outbox
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
    fields: frozenset[str]  # the form fields besides the file


MAX_NAME_CHARS = 200
MAX_ARCHITECTURE_CHARS = 64


def _record_name(fields: dict[str, str], filename: str) -> str:
    """The ``name`` field (checked against its column), or the file name, shortened."""
    name = fields.get("name")
    if name and len(name) > MAX_NAME_CHARS:
        raise Problem(
            422, "validation_error", "name is too long",
            f"name has {len(name)} characters; at most {MAX_NAME_CHARS} are allowed.",
        )  # fmt: skip
    return name or filename[:MAX_NAME_CHARS]


def _model_fields(fields: dict[str, str]) -> dict[str, Any]:
    architecture = fields.get("architecture") or None
    if architecture and len(architecture) > MAX_ARCHITECTURE_CHARS:
        raise Problem(
            422, "validation_error", "architecture is too long",
            f"architecture names a built-in architecture (at most {MAX_ARCHITECTURE_CHARS} "
            "characters), such as resnet20.",
        )  # fmt: skip
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
    frozenset({"name", "architecture", "architecture_args"}),
)  # fmt: skip
DATASET = UploadKind(
    "dataset", "datasets", DatasetRecord, dataset_out, DatasetOut, VALIDATE_DATASET,
    lambda s: s.max_dataset_bytes, lambda fields: {}, ("dataset_id", "eval_dataset_id"),
    frozenset({"name"}),
)  # fmt: skip


def _request_body(kind: UploadKind) -> dict[str, Any]:
    """The multipart form the route parses itself (so FastAPI cannot describe it)."""
    # every form value travels as text, so the text fields carry no JSON type: "3" is a name
    properties: dict[str, Any] = {
        "file": {"type": "string", "format": "binary"},
        "name": {"maxLength": MAX_NAME_CHARS, "description": "Default: the file name."},
    }
    if kind.name == "model":
        properties["architecture"] = {"maxLength": MAX_ARCHITECTURE_CHARS}
        properties["architecture_args"] = {"description": "A JSON object, as text."}
    schema = {
        "type": "object",
        "required": ["file"],
        "properties": properties,
        "additionalProperties": False,
    }
    return {"required": True, "content": {"multipart/form-data": {"schema": schema}}}


MULTIPART_OVERHEAD_BYTES = MAX_FIELDS * MAX_FIELD_BYTES + 64 * 1024
"""What a body may hold beyond the file: its form fields, part headers and boundaries."""


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
        responses=problem_responses(415),
        openapi_extra={"requestBody": _request_body(kind)},
        summary=f"Upload a {kind.name}",
        description=(
            "multipart/form-data with the file in field `file`; optional `name`"
            + (", `architecture` and `architecture_args` (JSON)" if kind is MODEL else "")
            + ". Streamed to storage; validated asynchronously (status pending -> ready|invalid)."
        ),
    )
    async def create(
        request: Request,
        project_id: ProjectAloneDep,
        settings: SettingsDep,
        storage: StorageDep,
        dispatcher: DispatcherDep,
    ) -> Any:
        directory = request.app.state.incoming_dir
        upload = await receive_upload(request, kind.limit(settings), kind.fields, directory)
        try:  # whatever is refused from here on, the received file goes
            extra = kind.extra(upload.fields)
            name = _record_name(upload.fields, upload.filename)
            record_id = new_id(kind.name)
            key = f"projects/{project_id}/{kind.plural}/{record_id}/{upload.filename}"
            await run_in_threadpool(storage.put_new_file, key, upload.path)
        finally:
            upload.path.unlink(missing_ok=True)
        record = record_type(
            id=record_id,
            project_id=project_id,
            name=name,
            filename=upload.filename,
            storage_key=key,
            size_bytes=upload.size,
            sha256=upload.sha256,
            **extra,
        )

        def save() -> None:
            try:
                with request.app.state.sessionmaker() as session, session.begin():
                    session.add(record)
            except BaseException:
                storage.delete(key)  # no object without its record
                raise

        await run_in_threadpool(save)
        factory = request.app.state.sessionmaker  # kept pending if the queue is down: outbox
        await run_in_threadpool(outbox.dispatch, factory, dispatcher, kind.task, record_id)
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
        scope = record_type.project_id == project_id
        return page(session, statement, record_type, after, limit, kind.out, scope)

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
