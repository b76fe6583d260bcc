"""RFC 9457 problem details: every error the API returns, rendered with its stable ``code``."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from core.problems import Problem
from core.storage import StorageUnavailable

log = logging.getLogger("api")

OUTAGES: dict[str, tuple[type[Exception], ...]] = {
    "database": (OperationalError, InterfaceError, PoolTimeout),
    "storage": (StorageUnavailable,),
}
"""Errors that mean a dependency is down, hung or overloaded, not that the request is wrong:
answered 503 with Retry-After (clients and the SDK retry), never 500."""

PROBLEM_JSON = "application/problem+json"


def problem_response(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str = "",
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body = {
        "type": f"https://xai-compress.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail or title,
        "instance": request.url.path,
        **extra,
    }
    headers = dict(headers or {})
    if "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


STATUS_CODES = {
    400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
    405: "method_not_allowed", 406: "not_acceptable", 409: "conflict",
    413: "payload_too_large", 415: "unsupported_media_type", 422: "validation_error",
    429: "rate_limited", 500: "internal_error", 503: "unavailable",
}  # fmt: skip


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route fully serves at this path (RFC 9110: a 405 must say which),
    found by asking the routes as they would be asked for that method."""
    routes = request.app.router.routes
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(request, exc.status, exc.code, exc.title, exc.detail, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(error["loc"]), "msg": error["msg"], "type": error["type"]}
            for error in exc.errors()
        ]
        return problem_response(
            request, 422, "validation_error", "The request is invalid",
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors),
            errors=errors,
        )  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STATUS_CODES.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # Starlette names only the first route's methods
            headers["Allow"] = ", ".join(allowed_methods(request))
        return problem_response(request, exc.status_code, code, str(exc.detail), headers=headers)

    for dependency, errors in OUTAGES.items():
        for error in errors:
            app.add_exception_handler(error, _outage_handler(dependency))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return problem_response(request, 500, "internal_error", "Internal server error")


def _outage_handler(dependency: str) -> Any:
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        log.warning("%s unavailable on %s: %s", dependency, request.url.path, exc)
        return problem_response(
            request, 503, f"{dependency}_unavailable", f"The {dependency} is unavailable",
            f"The service's {dependency} did not answer in time. Try again shortly.",
            retry_after=request.app.state.settings.retry_after_seconds,
        )  # fmt: skip

    return handler
