"""The work a worker does, by task name: the same functions serve Celery and the embedded
in-process worker."""

from __future__ import annotations

from collections.abc import Callable

from core.dispatch import RUN_JOB, VALIDATE_DATASET, VALIDATE_MODEL
from worker.resources import Resources
from worker.runner import run_job
from worker.validation import validate_dataset, validate_model

HANDLERS: dict[str, Callable[[Resources, str], str]] = {
    RUN_JOB: run_job,
    VALIDATE_MODEL: validate_model,
    VALIDATE_DATASET: validate_dataset,
}
REAP = "xai.reap"
SWEEP = "xai.sweep_outbox"
DELIVER_WEBHOOKS = "xai.deliver_webhooks"
HOUSEKEEPING = (REAP, SWEEP, DELIVER_WEBHOOKS)
"""Routed to the housekeeping queue and its light worker, never to the GPU workers' queue."""
