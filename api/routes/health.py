"""Liveness (the process answers) and readiness (database, broker and storage answer)."""

from __future__ import annotations

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
    state = request.app.state

    def database() -> None:
        with state.read_sessionmaker() as session:
            session.execute(text("SELECT 1"))

    checks = {
        "database": database,
        "broker": state.dispatcher.check,
        "storage": state.storage.check,
    }
    failures = {}
    for name, check in checks.items():
        try:
            await run_in_threadpool(check)
        except Exception as exc:  # any failure means not ready; say which and why
            failures[name] = str(exc) or type(exc).__name__
    if failures:
        raise Problem(
            503, "not_ready", "Not ready",
            "; ".join(f"{name}: {reason}" for name, reason in failures.items()),
            checks={name: name not in failures for name in checks},
        )  # fmt: skip
    return {"status": "ready", "checks": {name: True for name in checks}}
