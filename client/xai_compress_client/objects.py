"""What the API returns, as typed records, and the one converter from and to JSON.

Fields mirror the API's response schemas. Unknown fields are ignored, so a newer server
that adds fields does not break an older client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from types import NoneType, UnionType
from typing import Any, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class ErrorInfo:
    code: str
    message: str


@dataclass(frozen=True, kw_only=True)
class Upload:
    """What models and datasets share; ``status`` is pending until the worker validated it."""

    id: str
    name: str
    filename: str
    size_bytes: int
    sha256: str
    status: str  # pending | ready | invalid
    error: ErrorInfo | None
    format: str | None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Model(Upload):
    architecture: str | None
    architecture_args: dict[str, Any] | None
    input_shape: list[int] | None
    num_classes: int | None
    parameters: int | None
    macs: int | None


@dataclass(frozen=True, kw_only=True)
class Dataset(Upload):
    samples: int | None
    num_classes: int | None
    sample_shape: list[int] | None
    classes: list[str] | None


@dataclass(frozen=True, kw_only=True)
class Event:
    """One entry of a job's append-only feed (``type`` is ``status`` or ``progress``)."""

    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class Artifact:
    name: str
    content_type: str
    size_bytes: int
    sha256: str
    download_url: str
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class WebhookEndpoint:
    """``secret`` (``whsec_...``) is only returned by create: store it then."""

    id: str
    url: str
    events: list[str]
    description: str
    secret: str | None = None
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class DeliveryAttempt:
    attempt: int
    status_code: int | None
    error: str | None
    duration_ms: float
    created_at: datetime


@dataclass(frozen=True, kw_only=True)
class WebhookDelivery:
    id: str
    event: str
    job_id: str
    status: str  # pending | succeeded | failed
    attempts: list[DeliveryAttempt]
    next_attempt_at: datetime | None = None
    created_at: datetime


def from_api(cls: type[T], data: Mapping[str, Any], **extra: Any) -> T:
    """Build the record ``cls`` from a response body; ``extra`` sets fields the API does not."""
    hints = get_type_hints(cls)
    known = {field.name for field in fields(cls)}  # type: ignore[arg-type]
    values = {name: _convert(hints[name], value) for name, value in data.items() if name in known}
    return cls(**values, **extra)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if get_origin(hint) in (Union, UnionType):
        hint = next(arg for arg in get_args(hint) if arg is not NoneType)
    if hint is datetime:
        return datetime.fromisoformat(value)
    if is_dataclass(hint):
        return from_api(hint, value)  # type: ignore[arg-type]
    if get_origin(hint) is list and is_dataclass(item := get_args(hint)[0]):
        return [from_api(item, entry) for entry in value]  # type: ignore[arg-type]
    return value


def to_dict(value: Any) -> Any:
    """The JSON-ready form of a record (private fields left out), for printing or storing."""
    if is_dataclass(value) and not isinstance(value, type):
        return {
            field.name: to_dict(getattr(value, field.name))
            for field in fields(value)
            if not field.name.startswith("_")
        }
    if isinstance(value, list):
        return [to_dict(entry) for entry in value]
    if isinstance(value, datetime):
        return value.isoformat()
    return value
