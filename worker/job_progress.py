"""Turn the engine's progress callbacks into job-row updates and events, throttled.

The row (stage, progress, ETA, heartbeat) is written at most twice a second; a ``progress``
event is appended when the stage changes or overall progress moved by 5 points, so the feed
stays readable. When a stage is quiet for QUIET_SECONDS (one long operation: reading a big
model, building a pruning graph, exporting), the heartbeat thread appends a ``heartbeat``
event naming the stage, so a follower hears from every stage at least every 10 s.
Cancellation is read from the row at most once a second.

Every write is fenced by the attempt's number (``core.job_state.attempt_row``): an attempt
that no longer owns its job stops at its next progress report or cancellation check
(``AttemptSuperseded``). Progress is best-effort: a database error while reporting it is
logged and the job goes on; the heartbeat thread keeps trying through an outage, so a live job
looks alive again as soon as the database answers.
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.job_state import AttemptSuperseded, append_event, attempt_row
from core.tables import Job, utcnow

log = logging.getLogger("worker.job_progress")

ROW_INTERVAL = 0.5
EVENT_STEP = 0.05
CANCEL_INTERVAL = 1.0
HEARTBEAT_INTERVAL = 5.0
"""How often ``heartbeat_at`` is refreshed while nothing else writes the row (at most; a
third of the staleness threshold when that is shorter, see ``heartbeat_interval``)."""
QUIET_SECONDS = 8.0
"""A ``heartbeat`` event is appended when no event was for this long."""
TICK = 1.0


def heartbeat_interval(stale_seconds: float) -> float:
    """Three beats fit into the staleness threshold, so one slow write is never fatal."""
    return min(HEARTBEAT_INTERVAL, stale_seconds / 3)


class JobProgress:
    """Maps stage progress into [start, end] of the whole job and records it."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        attempt: int,
        reads: sessionmaker[Session] | None = None,
    ) -> None:
        self.factory = factory
        self.reads = reads or factory  # the cancel check only reads
        self.job_id = job_id
        self.attempt = attempt
        self.superseded = False  # set by the heartbeat when the fence says so
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
        try:
            with self.lock, self.factory() as session, session.begin():
                job = attempt_row(session, self.job_id, self.attempt)
                job.stage, job.progress, job.eta_seconds = stage, overall, eta
                job.heartbeat_at = utcnow()
                if stage_changed or overall - self.last_event_overall >= EVENT_STEP:
                    self.last_event_overall, self.last_event_at = overall, now
                    append_event(
                        session, job, "progress",
                        {"stage": stage, "stage_progress": round(fraction, 4),
                         "progress": round(overall, 4), "eta_seconds": eta},
                    )  # fmt: skip
        except SQLAlchemyError as exc:  # the heartbeat keeps the row alive; the work goes on
            log.warning("progress of %s not recorded: %s", self.job_id, exc)

    def note(self, kind: str, details: dict[str, object]) -> None:
        """Append an event the engine asked for (``batch_size_reduced``, ...) or the runner's
        own (``runtime``: where the job computes) to the feed at once."""
        try:
            with self.lock, self.factory() as session, session.begin():
                job = attempt_row(session, self.job_id, self.attempt)
                append_event(session, job, kind, details)
                self.last_event_at = time.monotonic()
        except SQLAlchemyError as exc:  # a lost note never stops the work
            log.warning("%s event of %s not recorded: %s", kind, self.job_id, exc)

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
        """True once a cancel was asked for; raises ``AttemptSuperseded`` once this attempt no
        longer owns the job (the engine stops either way, and the runner records nothing)."""
        if self.superseded:
            raise AttemptSuperseded(self.job_id, self.attempt)
        now = time.monotonic()
        if not self.cancel_requested and now - self.last_cancel_check >= CANCEL_INTERVAL:
            self.last_cancel_check = now
            try:
                with self.reads() as session:
                    job = session.get(Job, self.job_id)
                    status, attempts = (job.status, job.attempts) if job else ("gone", -1)
            except SQLAlchemyError as exc:  # asked again at the next check
                log.warning("cancellation of %s not read: %s", self.job_id, exc)
                return False
            if attempts != self.attempt or status not in ("running", "cancelling"):
                self.superseded = True
                raise AttemptSuperseded(self.job_id, self.attempt)
            self.cancel_requested = status == "cancelling"
        return self.cancel_requested


class Heartbeat:
    """Keeps ``heartbeat_at`` fresh while a job runs, even inside one long operation, so the
    reaper can tell a slow job from a dead worker, and tells followers which stage is busy.

    It survives the database: a failed beat is logged and tried again at the next tick, so a
    short outage does not make a live job look dead for good. It stops when the fence says
    the attempt no longer owns the job, and marks the progress so that the engine stops too.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        job_id: str,
        progress: JobProgress,
        interval: float = HEARTBEAT_INTERVAL,
    ) -> None:
        self.factory, self.job_id, self.progress = factory, job_id, progress
        self.interval = interval
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
            try:
                if self._beat_once(now, last_beat):
                    last_beat = now
            except AttemptSuperseded:
                self.progress.superseded = True
                return
            except Exception as exc:  # the database is away: keep trying, tick by tick
                log.warning("heartbeat of %s failed, retrying: %s", self.job_id, exc)

    def _beat_once(self, now: float, last_beat: float) -> bool:
        """Write a beat (and a heartbeat event when the feed is quiet) if one is due."""
        progress = self.progress
        with progress.lock:
            event = progress.heartbeat_event(now)
            if event is None and now - last_beat < self.interval:
                return False
            with self.factory() as session, session.begin():
                job = attempt_row(session, self.job_id, progress.attempt)
                job.heartbeat_at = utcnow()
                if event is not None:
                    append_event(session, job, "heartbeat", event)
            return True
