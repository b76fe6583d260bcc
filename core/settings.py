"""Every setting of the service, in one place, read from the environment.

With nothing set, the service runs embedded: SQLite and local storage under ``./data`` and
an in-process worker. Setting ``DATABASE_URL``, ``REDIS_URL`` and the ``S3_*`` variables
turns the same code into the distributed deployment.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

TARGET_NAME = r"^[a-z0-9][a-z0-9_-]{0,63}$"
WORKER_DEVICE = r"^(auto|cpu|cuda(:[0-9]+)?)$"
"""The device settings the engine's Runtime understands (compression.runtime.DEVICE_SETTING)."""


class MlflowServer(BaseModel):
    """An MLflow tracking server the operator lets jobs log to, known to tenants by name only."""

    tracking_uri: str = Field(description="e.g. http://mlflow:5000")
    artifact_location: str | None = Field(
        None, description="Where new experiments keep artifacts (default: the server's)."
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("data"), description="Root for embedded SQLite and local storage.")
    database_url: str | None = Field(
        None, description="SQLAlchemy URL; default sqlite:///<data_dir>/xai-compress.db."
    )
    database_connect_timeout_seconds: float = Field(
        5.0, gt=0, description="A database that does not accept a connection in this long is down."
    )
    database_statement_timeout_seconds: float = Field(
        60.0, gt=0, description="Postgres cancels a statement (or lock wait) running this long."
    )
    database_hang_seconds: float = Field(
        1.0,
        gt=0,
        description="The API takes the database for down when a new connection, or a call "
        "while a fresh connection cannot answer either, has no answer in this long: requests "
        "then answer 503 at once until a background probe gets an answer (core.db_guard).",
    )
    database_retry_seconds: float = Field(
        120.0,
        ge=0,
        description="A worker waits this long for the database to come back (reading the job, "
        "recording its results) before it gives the attempt up.",
    )
    redis_url: str | None = Field(
        None, description="Celery broker; unset means the in-process (embedded) worker."
    )
    queue_name: str = Field("compress", description="The job queue (served by GPU workers).")
    housekeeping_queue: str = Field(
        "housekeeping",
        description="Reaper, outbox sweeper and webhook sender: a light worker of its own, so "
        "housekeeping never waits behind a job.",
    )

    storage_backend: Literal["local", "s3"] = "local"
    storage_path: Path | None = Field(
        None, description="Local storage root; default data_dir/objects."
    )
    s3_endpoint_url: str | None = None
    s3_public_endpoint_url: str | None = Field(
        None, description="S3 address clients use for downloads, if not s3_endpoint_url."
    )
    s3_bucket: str = "xai-compress"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_region: str = "us-east-1"
    presigned_url_seconds: int = Field(300, ge=10, le=86400)
    s3_connect_timeout_seconds: float = Field(5.0, gt=0)
    s3_read_timeout_seconds: float = Field(
        30.0, gt=0, description="A store that accepts a connection but never answers fails then."
    )
    readiness_timeout_seconds: float = Field(
        3.0, gt=0, description="/readyz answers within this long, ready or not."
    )
    retry_after_seconds: int = Field(
        5, ge=1, description="Retry-After of a 503 answered while a dependency is down."
    )

    upload_temp_dir: Path | None = Field(
        None,
        description="Where uploads stream to before storage; default <tmp>/xai-compress-incoming.",
    )
    upload_temp_max_idle_seconds: float = Field(
        3600.0, gt=0, description="An upload file untouched this long is removed by the sweep."
    )
    max_model_bytes: int = Field(512 * 1024**2, description="Largest model upload (413 above).")
    max_dataset_bytes: int = Field(2 * 1024**3, description="Largest dataset upload (413 above).")
    max_request_body_bytes: int = Field(
        1024**2, gt=0, description="Largest JSON request body (413 above); uploads have theirs."
    )
    max_archive_expanded_bytes: int = Field(
        2 * 1024**3, gt=0, description="Uncompressed bytes of all members of one uploaded archive."
    )
    max_archive_members: int = Field(100_000, gt=0, description="Members of one archive.")
    max_compression_ratio: float = Field(
        200.0, gt=1, description="How many times one archive member (>1 MiB) may inflate."
    )
    max_metadata_bytes: int = Field(
        64 * 1024**2, gt=0, description="One JSON member of a .pt2 (graph, weights config)."
    )
    max_input_elements: int = Field(
        4 * 1024**2, gt=0, description="Elements of one model input sample (C*H*W)."
    )
    max_model_parameters: int = Field(
        150_000_000, gt=0, description="Parameters of a built-in architecture, counted first."
    )
    max_image_pixels: int = Field(
        4096 * 4096, gt=0, description="Pixels of one image in an image-folder dataset."
    )
    max_decoded_dataset_bytes: int = Field(
        4 * 1024**3, gt=0, description="A dataset's samples decoded to float32, in bytes."
    )
    job_soft_time_limit: int = Field(3 * 3600, description="Seconds before a job is asked to stop.")
    job_time_limit: int = Field(3 * 3600 + 300, description="Seconds before a job is killed.")
    stale_job_seconds: int = Field(
        30,
        ge=3,
        description="No heartbeat for this long: the job's worker is taken for dead and the job "
        "requeued (a live worker beats every few seconds, also inside one long operation).",
    )
    worker_shutdown_grace_seconds: float = Field(
        60.0,
        ge=0,
        description="A worker asked to stop (SIGTERM) lets its running job or validation go on "
        "this long, then hands it back to the queue for another worker. Keep it 20 s below "
        "the orchestrator's stop grace period (compose: 2 min), which then kills the worker.",
    )
    reap_interval_seconds: float = Field(10.0, gt=0, description="How often the reaper looks.")
    sweep_interval_seconds: float = Field(
        10.0, gt=0, description="How often the outbox sweeper dispatches what is due."
    )
    dispatch_grace_seconds: float = Field(
        10.0,
        ge=0,
        description="A job or upload never dispatched is the sweeper's after this long (the "
        "request that created it failed to hand it over).",
    )
    lost_message_seconds: float = Field(
        60.0,
        gt=0,
        description="With the job queue empty, a job or upload dispatched this long ago and "
        "still waiting lost its message (a broker restarted without its data): dispatched again.",
    )
    redispatch_seconds: float = Field(
        3600.0,
        gt=0,
        description="A job or upload dispatched this long ago and still waiting is dispatched "
        "again (the broker lost the message); a duplicate is skipped by the worker.",
    )
    worker_threads: int = Field(0, description="torch threads per job; 0 = all cores / 1 job.")
    worker_device: str = Field(
        "auto",
        pattern=WORKER_DEVICE,
        description="Where a worker computes: auto (the first visible CUDA device when there is "
        "one, else the CPU), cpu, cuda or cuda:N. One worker process per GPU: give each its own "
        "CUDA_VISIBLE_DEVICES and leave this at auto or cuda.",
    )
    worker_gpu_memory_fraction: float | None = Field(
        None, gt=0, le=1, description="Share of the GPU's memory one job may allocate; unset: all."
    )
    worker_bf16_autocast: bool = Field(
        False,
        description="Run forward passes on the GPU in bfloat16 autocast (faster; scores and "
        "accuracies then differ from a float32 run in the third digit).",
    )
    task_memory_limit_mb: int = Field(
        16384,
        ge=0,
        description="Address space of the child process running one job or validation, in "
        "MiB; past it the work fails with resource_limit. 0 = no cap. Not applied on a CUDA "
        "worker (CUDA reserves far more address space than memory): its container's limit is.",
    )
    validation_time_limit: int = Field(
        900, gt=0, description="Seconds before validating one upload is stopped (time_limit)."
    )

    webhook_timeout_seconds: float = Field(10.0, gt=0, le=60)
    webhook_max_attempts: int = Field(6, ge=1, le=20)
    webhook_retry_base_seconds: float = Field(
        5.0, gt=0, description="Retry n waits base * 2**(n-1) seconds."
    )
    webhook_allow_private_networks: bool = Field(
        False,
        description="Let webhooks call loopback, private, link-local and other non-global "
        "addresses (development only: receivers on this machine or a private network). Off, "
        "every address a webhook host resolves to must be on the public internet.",
    )
    webhook_concurrency: int = Field(
        16, ge=1, le=256, description="Webhook attempts in flight at once, per sender."
    )
    webhook_per_endpoint_concurrency: int = Field(
        2, ge=1, le=64, description="Attempts in flight to any one endpoint, per sender."
    )
    webhook_max_response_bytes: int = Field(
        64 * 1024, ge=0, description="Bytes of a receiver's answer read, at most."
    )

    mlflow_targets: dict[str, MlflowServer] = Field(
        default_factory=dict,
        description='Named MLflow servers jobs may log to, as JSON: {"team": {"tracking_uri": '
        '"http://mlflow:5000"}}. A job names one; it never gives a URI or a path.',
    )
    metrics_token: str | None = Field(
        None,
        description="Bearer token that /metrics requires (it shows every project's job counts); "
        "unset, /metrics answers 404.",
    )
    sse_poll_seconds: float = Field(
        0.5,
        gt=0,
        description="How often an event stream re-reads its job's feed when no notification "
        "can wake it (SQLite, or while the Postgres LISTEN connection is down).",
    )
    sse_notified_poll_seconds: float = Field(
        5.0,
        gt=0,
        description="With Postgres LISTEN/NOTIFY up, streams wake on each new event; they "
        "re-read this often anyway, as a safety net.",
    )

    @field_validator("mlflow_targets")
    @classmethod
    def _target_names(cls, targets: dict[str, MlflowServer]) -> dict[str, MlflowServer]:
        for name in targets:
            if not re.match(TARGET_NAME, name):
                raise ValueError(f"MLflow target name {name!r} must match {TARGET_NAME}")
        return targets

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'xai-compress.db'}"

    @property
    def resolved_storage_path(self) -> Path:
        return self.storage_path or self.data_dir / "objects"

    @property
    def embedded(self) -> bool:
        return self.redis_url is None


@lru_cache
def get_settings() -> Settings:
    return Settings()
