"""What every task needs (settings, database sessions, storage), built once per process."""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property, lru_cache
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from compression.intake_limits import IntakeLimits
from compression.runtime import Runtime
from core.db import make_engine, make_read_sessionmaker, make_sessionmaker
from core.settings import Settings, get_settings
from core.storage import Storage, make_storage
from core.tables import DatasetRecord, ModelRecord


@dataclass(frozen=True)
class Resources:
    settings: Settings
    sessionmaker: sessionmaker[Session]
    storage: Storage

    @cached_property
    def read_sessionmaker(self) -> sessionmaker[Session]:
        """Sessions that only read, on the same engine: on embedded SQLite they begin
        DEFERRED, so the worker's frequent reads (the cancel check, the job's rows) neither
        wait for nor hold the write lock the API's writers queue for."""
        return make_read_sessionmaker(self.sessionmaker.kw["bind"])

    @property
    def limits(self) -> IntakeLimits:
        """The engine's intake limits, each read from the setting of the same name."""
        return intake_limits(self.settings)

    def close(self) -> None:
        """Return the pooled database connections (a process that is done with them)."""
        self.sessionmaker.kw["bind"].dispose()


def intake_limits(settings: Settings) -> IntakeLimits:
    return IntakeLimits(
        **{field.name: getattr(settings, field.name) for field in fields(IntakeLimits)}
    )


def job_runtime(settings: Settings) -> Runtime:
    """The engine's runtime from the WORKER_* settings (``auto``: CUDA when present)."""
    return Runtime.from_setting(
        settings.worker_device,
        threads=settings.worker_threads or None,
        gpu_memory_fraction=settings.worker_gpu_memory_fraction,
        bf16_autocast=settings.worker_bf16_autocast,
    )


def build_resources(settings: Settings) -> Resources:
    return Resources(settings, make_sessionmaker(make_engine(settings)), make_storage(settings))


def fetch(resources: Resources, record: ModelRecord | DatasetRecord, workdir: Path) -> Path:
    """Download an upload into ``workdir`` under its own name (a folder per record id)."""
    path = workdir / record.id / record.filename
    resources.storage.download_to(record.storage_key, path)
    return path


@lru_cache
def default_resources() -> Resources:
    return build_resources(get_settings())
