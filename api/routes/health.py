"""Liveness (the process answers) and readiness (database, broker and storage answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from core.problems import Problem

router = APIRouter(tags=["health"])


@router.get("/healthz", operation_id="healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", operation_id="readyz")
async def readyz(request: Request) -> dict[str, Any]:
    """Database, broker and storage are asked at once; whatever has not answered within
    ``readiness_timeout_seconds`` counts as down, so a hung dependency never hangs the probe."""
    state = request.app.state

    def database() -> None:
        with state.read_sessionmaker() as session:
            session.execute(text("SELECT 1"))

    checks = {
        "database": database,
        "broker": state.dispatcher.check,
        "storage": state.storage.check,
    }
    deadline = state.settings.readiness_timeout_seconds
    running = {
        name: asyncio.ensure_future(run_in_threadpool(check)) for name, check in checks.items()
    }
    await asyncio.wait(running.values(), timeout=deadline)
    failures = {}
    for name, task in running.items():
        if not task.done():
            task.cancel()  # the thread finishes on its own; its answer is no longer wanted
            failures[name] = f"no answer within {deadline:g} s"
        elif task.exception() is not None:  # any failure means not ready; say which and why
            exc = task.exception()
            failures[name] = str(exc) or type(exc).__name__
    if failures:
        raise Problem(
            503, "not_ready", "Not ready",
            "; ".join(f"{name}: {reason}" for name, reason in failures.items()),
            checks={name: name not in failures for name in checks},
            retry_after=state.settings.retry_after_seconds,
        )  # fmt: skip
    return {"status": "ready", "checks": {name: True for name in checks}}
