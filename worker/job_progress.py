"""Turn the engine's progress callbacks into job-row updates and events, throttled.

The row (stage, progress, ETA, heartbeat) is written at most twice a second; a ``progress``
event is appended when the stage changes or overall progress moved by 5 points, so the feed
stays readable. When a stage is quiet for QUIET_SECONDS (one long operation: reading a big
model, building a pruning graph, exporting), the heartbeat thread appends a ``heartbeat``
event naming the stage, so a follower hears from every stage at least every 10 s.
Cancellation is read from the row at most once a second.
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
"""How often ``heartbeat_at`` is refreshed while nothing else writes the row."""
QUIET_SECONDS = 8.0
"""A ``heartbeat`` event is appended when no event was for this long."""
TICK = 1.0


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
        self.stage_fraction = 0.0
        self.stage_started = self.last_event_at = time.monotonic()
        self.lock = threading.Lock()  # the heartbeat thread appends events too

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
        now = time.monotonic()
        if stage_changed:
            self.stage_started = now
        self.stage, self.overall, self.stage_fraction = stage, overall, fraction
        if not stage_changed and now - self.last_row < ROW_INTERVAL:
            return
        self.last_row = now
        eta = self._eta(now)
        with self.lock, self.factory() as session, session.begin():
            job = session.get(Job, self.job_id)
            job.stage, job.progress, job.eta_seconds, job.heartbeat_at = (
                stage,
                overall,
                eta,
                utcnow(),
            )
            if stage_changed or overall - self.last_event_overall >= EVENT_STEP:
                self.last_event_overall, self.last_event_at = overall, now
                append_event(
                    session, job, "progress",
                    {"stage": stage, "stage_progress": round(fraction, 4),
                     "progress": round(overall, 4), "eta_seconds": eta},
                )  # fmt: skip

    def heartbeat_event(self, now: float) -> dict[str, object] | None:
        """What a heartbeat event says, when the feed has been quiet for QUIET_SECONDS."""
        if self.stage is None or now - self.last_event_at < QUIET_SECONDS:
            return None
        self.last_event_at = now
        return {
            "stage": self.stage,
            "stage_progress": round(self.stage_fraction, 4),
            "progress": round(self.overall, 4),
            "stage_seconds": round(now - self.stage_started, 1),
        }

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
    reaper can tell a slow job from a dead worker, and tells followers which stage is busy."""

    def __init__(
        self, factory: sessionmaker[Session], job_id: str, progress: JobProgress | None = None
    ) -> None:
        self.factory, self.job_id, self.progress = factory, job_id, progress
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True, name=f"heartbeat-{job_id}")

    def __enter__(self) -> Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(timeout=5)

    def _beat(self) -> None:
        last_beat = time.monotonic()
        while not self.stopped.wait(TICK):
            now = time.monotonic()
            lock = self.progress.lock if self.progress else threading.Lock()
            with lock:
                event = self.progress.heartbeat_event(now) if self.progress else None
                if event is None and now - last_beat < HEARTBEAT_INTERVAL:
                    continue
                last_beat = now
                with self.factory() as session, session.begin():
                    job = session.get(Job, self.job_id)
                    if job is None:
                        continue
                    job.heartbeat_at = utcnow()
                    if event is not None:
                        append_event(session, job, "heartbeat", event)
