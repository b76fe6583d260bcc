"""``client.models`` and ``client.datasets``: one shape, as on the server."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, Generic, TypeVar

from xai_compress_client.errors import UploadInvalid
from xai_compress_client.objects import Dataset, Model, Upload, from_api
from xai_compress_client.polling import poll_until
from xai_compress_client.transport import Transport

U = TypeVar("U", bound=Upload)


class _Uploads(Generic[U]):
    """Upload, read, list, delete, and wait for the worker's validation."""

    def __init__(self, transport: Transport, record: type[U], plural: str) -> None:
        self._transport = transport
        self._record = record
        self._path = f"/v1/{plural}"

    def _upload(self, path: str | PathLike[str], fields: Mapping[str, str | None]) -> U:
        form = {name: value for name, value in fields.items() if value is not None}
        response = self._transport.request("POST", self._path, form=form, file=Path(path))
        return from_api(self._record, response.json())

    def get(self, record_id: str) -> U:
        return from_api(self._record, self._transport.request("GET", self._url(record_id)).json())

    def list(self, *, limit: int = 20) -> Iterator[U]:
        """Everything, newest first; ``limit`` is the page size, later pages load on demand."""
        for item in self._transport.paginate(self._path, {"limit": limit}):
            yield from_api(self._record, item)

    def delete(self, record_id: str) -> None:
        """Refused with ConflictError (``*_in_use``) while an unfinished job uses it."""
        self._transport.request("DELETE", self._url(record_id))

    def wait_ready(
        self, record_id: str, timeout: float | None = 300.0, *, poll_interval: float = 0.5
    ) -> U:
        """Wait for validation; the ready record, or UploadInvalid with the server's code."""
        record = poll_until(
            lambda: self.get(record_id),
            lambda record: record.status != "pending",
            timeout=timeout,
            interval=poll_interval,
            what=f"validation of {record_id}",
        )
        if record.status == "invalid":
            raise UploadInvalid(record)
        return record

    def _url(self, record_id: str) -> str:
        return f"{self._path}/{record_id}"


class Models(_Uploads[Model]):
    def __init__(self, transport: Transport) -> None:
        super().__init__(transport, Model, "models")

    def upload(
        self,
        path: str | PathLike[str],
        *,
        name: str | None = None,
        architecture: str | None = None,
        architecture_args: Mapping[str, Any] | None = None,
    ) -> Model:
        """Stream a model file (``.pt2``, ONNX, or safetensors with ``architecture``)."""
        args = None if architecture_args is None else json.dumps(architecture_args)
        fields = {"name": name, "architecture": architecture, "architecture_args": args}
        return self._upload(path, fields)


class Datasets(_Uploads[Dataset]):
    def __init__(self, transport: Transport) -> None:
        super().__init__(transport, Dataset, "datasets")

    def upload(self, path: str | PathLike[str], *, name: str | None = None) -> Dataset:
        """Stream a dataset file (``.npz``, or a zip/tar of ``class_name/image`` files)."""
        return self._upload(path, {"name": name})
