"""Validate an upload by loading it with the engine, and record what was found.

A model is ready when it loads and runs (its format, input shape, classes, parameters and
MACs are recorded); a dataset when it parses and passes the dataset checks. Otherwise the
record becomes ``invalid`` with the engine's error code and message.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compression.data import dataset_format, load_dataset, load_npz
from compression.errors import CompressionError, is_out_of_memory
from compression.evaluate import count_macs, count_parameters
from compression.intake_limits import IntakeLimits
from compression.io import detect_model_format, load_model
from core.tables import DatasetRecord, ModelRecord
from worker.resources import Resources, fetch

log = logging.getLogger("worker.validation")

ARCHIVE_PROBE_SHAPE = (3, 16, 16)
"""Image archives are resized to the model's input in a job; validation only decodes them."""


def _validate(
    resources: Resources,
    table: type[ModelRecord] | type[DatasetRecord],
    record_id: str,
    inspect: Callable[[Path, Any, IntakeLimits], dict[str, Any]],
) -> str:
    with resources.read_sessionmaker() as session:
        record = session.get(table, record_id)
        if record is None or record.deleted_at is not None or record.status != "pending":
            return "skipped"
    with tempfile.TemporaryDirectory(prefix=f"{record_id}-") as workdir:
        path = fetch(resources, record, Path(workdir))
        try:
            found, status, code, message = (
                inspect(path, record, resources.limits),
                "ready",
                None,
                None,
            )
        except CompressionError as exc:
            found, status, code, message = {}, "invalid", exc.code, exc.message
        except Exception as exc:
            found, status = {}, "invalid"
            if is_out_of_memory(exc):
                limit = resources.settings.task_memory_limit_mb
                code = "resource_limit"
                message = f"Reading the file needed more than the {limit} MiB a task may use."
            else:
                log.exception("validating %s failed unexpectedly", record_id)
                code = "invalid_upload"
                message = f"The file could not be read ({type(exc).__name__})."
    end_upload(resources, table, record_id, status, code, message, found)
    return status


def end_upload(
    resources: Resources,
    table: type[ModelRecord] | type[DatasetRecord],
    record_id: str,
    status: str,
    code: str | None,
    message: str | None,
    found: dict[str, Any] | None = None,
) -> None:
    """Record how a pending upload's validation ended (by the validation itself, or by the
    parent of a child that died); an upload no longer pending is left alone, so a second
    validation of the same upload never overwrites the first or deletes what it accepted."""
    with resources.sessionmaker() as session, session.begin():
        record = session.get(table, record_id)
        if record is None or record.status != "pending":
            return
        for name, value in (found or {}).items():
            setattr(record, name, value)
        record.status, record.error_code, record.error_message = status, code, message
        storage_key = record.storage_key
    if status == "invalid":  # the record says why; the refused bytes serve no one
        resources.storage.delete(storage_key)


def _inspect_model(path: Path, record: ModelRecord, limits: IntakeLimits) -> dict[str, Any]:
    model_format = detect_model_format(str(path))
    loaded = load_model(
        str(path),
        architecture=record.architecture,
        architecture_args=record.architecture_args,
        limits=limits,
    )
    return {
        "format": str(model_format),
        "input_shape": list(loaded.input_shape),
        "num_classes": loaded.num_classes,
        "parameters": count_parameters(loaded.module)[0],
        "macs": count_macs(loaded.module, loaded.input_shape),
    }


def _inspect_dataset(path: Path, record: DatasetRecord, limits: IntakeLimits) -> dict[str, Any]:
    data_format = dataset_format(str(path))
    is_archive = data_format != "npz"
    # npz are read as they are (a job fits uint8 images to its model); archives are decoded
    # small, which finds every unreadable image now rather than in a job
    dataset = (
        load_dataset(str(path), ARCHIVE_PROBE_SHAPE, limits)
        if is_archive
        else load_npz(path, limits)
    )
    return {
        "format": data_format,
        "samples": dataset.num_samples,
        "num_classes": dataset.num_classes,
        "sample_shape": None if is_archive else list(dataset.sample_shape),
        "classes": list(dataset.classes),
    }


def validate_model(resources: Resources, model_id: str) -> str:
    return _validate(resources, ModelRecord, model_id, _inspect_model)


def validate_dataset(resources: Resources, dataset_id: str) -> str:
    return _validate(resources, DatasetRecord, dataset_id, _inspect_dataset)
