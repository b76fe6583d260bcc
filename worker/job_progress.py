"""Turn the engine's progress callbacks into job-row updates and events, throttled.

The row (stage, progress, ETA, heartbeat) is written at most twice a second; a ``progress``
event is appended when the stage changes or overall progress moved by 5 points, so the feed
stays readable. Cancellation is read from the row at most once a second.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from core.job_state import append_event
from core.tables import Job, utcnow

ROW_INTERVAL = 0.5
EVENT_STEP = 0.05
CANCEL_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 15.0


class JobProgress:
    """Maps stage progress into [start, end] of the whole job and records it."""

    def __init__(self, factory: sessionmaker[Session], job_id: str) -> None:
        self.factory = factory
        self.job_id = job_id
        self.started = time.monotonic()
        self.span = (0.0, 1.0)
        self.stage: str | None = None
        self.overall = 0.0
        self.last_row = 0.0
        self.last_event_overall = -1.0
        self.last_cancel_check = 0.0
        self.cancel_requested = False

    def enter(self, stage: str, start: float, end: float) -> None:
        """A runner-level stage (loading, exporting) occupying [start, end] overall."""
        self.span = (start, end)
        self.update(stage, 0.0, 0.0)

    def engine_callback(self, stage: str, fraction: float, overall: float) -> None:
        """The engine's callback: its overall fraction is mapped into the current span."""
        self.update(stage, fraction, overall)

    def update(self, stage: str, fraction: float, overall_in_span: float) -> None:
        start, end = self.span
        overall = max(self.overall, start + overall_in_span * (end - start))
        stage_changed = stage != self.stage
        self.stage, self.overall = stage, overall
        now = time.monotonic()
        if not stage_changed and now - self.last_row < ROW_INTERVAL:
            return
        self.last_row = now
        eta = self._eta(now)
        with self.factory() as session, session.begin():
            job = session.get(Job, self.job_id)
            job.stage, job.progress, job.eta_seconds, job.heartbeat_at = (
                stage,
                overall,
                eta,
                utcnow(),
            )
            if stage_changed or overall - self.last_event_overall >= EVENT_STEP:
                self.last_event_overall = overall
                append_event(
                    session, job, "progress",
                    {"stage": stage, "stage_progress": round(fraction, 4),
                     "progress": round(overall, 4), "eta_seconds": eta},
                )  # fmt: skip

    def _eta(self, now: float) -> float | None:
        if self.overall < 0.02:
            return None
        elapsed = now - self.started
        return round(elapsed * (1 - self.overall) / self.overall, 1)

    def should_cancel(self) -> bool:
        now = time.monotonic()
        if not self.cancel_requested and now - self.last_cancel_check >= CANCEL_INTERVAL:
            self.last_cancel_check = now
            with self.factory() as session:
                status = session.get(Job, self.job_id).status
            self.cancel_requested = status == "cancelling"
        return self.cancel_requested


class Heartbeat:
    """Keeps ``heartbeat_at`` fresh while a job runs, even inside one long operation, so the
    reaper can tell a slow job from a dead worker."""

    def __init__(self, factory: sessionmaker[Session], job_id: str) -> None:
        self.factory, self.job_id = factory, job_id
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{job_id}")

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        while not self.stopped.wait(HEARTBEAT_INTERVAL):
            with self.factory() as session, session.begin():
                job = session.get(Job, self.job_id)
                if job is not None:
                    job.heartbeat_at = utcnow()
