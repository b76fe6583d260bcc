"""Wake event streams when their job's feed grows, instead of every stream polling.

One Postgres connection per API process LISTENs on ``core.job_notify.CHANNEL``; each
notification names a job, and every stream following that job is woken to read the new
events. A stream still re-reads now and then (``sse_notified_poll_seconds``) in case a
notification went missing, and falls back to plain polling (``sse_poll_seconds``) on SQLite
and whenever the LISTEN connection is down; when it comes back, every stream is woken once
to catch up on what was written meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator

import psycopg
from sqlalchemy.engine import make_url

from core.job_notify import CHANNEL
from core.settings import Settings

log = logging.getLogger(__name__)
RECONNECT_SECONDS = 1.0
KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}
"""A Postgres that vanished without closing the socket is noticed within about 25 s."""


class EventWakeups:
    def __init__(self, settings: Settings) -> None:
        url = make_url(settings.resolved_database_url)
        self.conninfo = (
            url.set(drivername="postgresql").render_as_string(hide_password=False)
            if url.get_backend_name() == "postgresql"
            else None
        )
        self.poll_seconds = settings.sse_poll_seconds
        self.notified_poll_seconds = settings.sse_notified_poll_seconds
        self.listening = False
        self.followers: dict[str, set[asyncio.Event]] = {}
        self.task: asyncio.Task[None] | None = None
        self.draining = False
        """The server is stopping: streams end now (clients resume elsewhere with
        ``Last-Event-ID``) instead of holding the drain open until their job finishes."""

    def interval(self) -> float:
        """How long a stream may wait for a wake-up before it reads its feed anyway."""
        return self.notified_poll_seconds if self.listening else self.poll_seconds

    @contextlib.contextmanager
    def follow(self, job_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``job_id``'s feed may have grown; the stream clears it before
        each read, so a notification that arrives during the read is not lost."""
        woken = asyncio.Event()
        self.followers.setdefault(job_id, set()).add(woken)
        try:
            yield woken
        finally:
            followers = self.followers[job_id]
            followers.discard(woken)
            if not followers:
                del self.followers[job_id]

    async def start(self) -> None:
        if self.conninfo is not None:
            self.task = asyncio.create_task(self._listen(), name="job-event-listener")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None

    def drain(self) -> None:
        """End every stream at its next look (see ``draining``)."""
        self.draining = True
        self._wake_all()

    def _wake(self, job_id: str) -> None:
        for woken in self.followers.get(job_id, ()):
            woken.set()

    def _wake_all(self) -> None:
        for job_id in self.followers:
            self._wake(job_id)

    async def _listen(self) -> None:
        assert self.conninfo is not None
        while True:
            try:
                async with await psycopg.AsyncConnection.connect(
                    self.conninfo, autocommit=True, connect_timeout=5, **KEEPALIVES
                ) as connection:
                    await connection.execute(f"LISTEN {CHANNEL}")
                    self.listening = True
                    self._wake_all()  # catch up on what was written while not listening
                    async for notification in connection.notifies():
                        self._wake(notification.payload)
            except psycopg.Error as exc:
                log.warning("job event listener: %s; streams poll until it is back", exc)
            finally:
                self.listening = False
            self._wake_all()  # streams switch to polling now, not after their long wait
            await asyncio.sleep(RECONNECT_SECONDS)
