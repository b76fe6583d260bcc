"""Prometheus metrics: request latency (observed here) and job figures (read from the
database at scrape time, since jobs run in other processes)."""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Iterator

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from core.problems import Problem, not_found
from core.tables import Job

STATES = ("queued", "running", "cancelling", "succeeded", "failed", "cancelled")
RECENT_JOBS = 1000


class JobCollector(Collector):
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        state = self.app.state
        by_state = GaugeMetricFamily("xai_jobs", "Jobs by state", labels=["state"])
        stage_seconds = CounterMetricFamily(
            "xai_stage_seconds", f"Wall time per stage over the last {RECENT_JOBS} finished jobs",
            labels=["stage"],
        )  # fmt: skip
        with state.read_sessionmaker() as session:
            counts = dict(
                session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
            )
            recent = session.scalars(
                select(Job.metrics)
                .where(Job.status == "succeeded")
                .order_by(Job.finished_at.desc())
                .limit(RECENT_JOBS)
            ).all()
        for status in STATES:
            by_state.add_metric([status], counts.get(status, 0))
        totals: dict[str, float] = {}
        for metrics in recent:
            for stage, seconds in (metrics or {}).get("stage_seconds", {}).items():
                totals[stage] = totals.get(stage, 0.0) + float(seconds)
        for stage, seconds in sorted(totals.items()):
            stage_seconds.add_metric([stage], seconds)
        yield by_state
        yield stage_seconds
        depth = state.dispatcher.queue_depth()
        if depth is not None:
            queue = GaugeMetricFamily("xai_queue_depth", "Tasks waiting in the broker queue")
            queue.add_metric([], depth)
            yield queue


def install(app: FastAPI) -> None:
    registry = CollectorRegistry()
    latency = Histogram(
        "xai_request_seconds", "HTTP request latency", ["method", "route", "status"],
        registry=registry,
    )  # fmt: skip
    registry.register(JobCollector(app))

    @app.middleware("http")
    async def observe(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        start = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        latency.labels(request.method, path, str(response.status_code)).observe(
            time.perf_counter() - start
        )
        return response

    @app.get("/metrics", include_in_schema=False)
    def metrics(request: Request) -> Response:
        _authorize_scrape(request, app.state.settings.metrics_token)
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4")


def _authorize_scrape(request: Request, token: str | None) -> None:
    """/metrics counts every project's jobs, so it answers only to its own token (no project
    key opens it); without a configured token it does not exist."""
    if token is None:
        raise not_found("endpoint", "/metrics")
    presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    if not hmac.compare_digest(presented.encode(), token.encode()):
        raise Problem(
            401, "unauthorized", "Metrics token required",
            "Send the operator's METRICS_TOKEN as 'Authorization: Bearer <token>'.",
        )  # fmt: skip
