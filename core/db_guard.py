"""Fail fast while Postgres is down or hung, instead of making every request wait for it.

Why: a timeout alone is not enough. libpq's ``connect_timeout`` cannot go below 2 s, a
server that was stopped (SIGSTOP, a frozen VM, a lost route) still has its kernel accept
connections and acknowledge data, so a statement or the pool's pre-ping on a pooled connection
waits forever, and ``statement_timeout`` is enforced by that same server. Every request would
pay the wait, and the threads of the server fill up with requests that hang.

So the API's engine is guarded (workers are not: they ride an outage out by retrying):

- a new connection that has not answered within ``database_hang_seconds`` counts as failed;
- a connection checked out for longer than a third of that makes the guard *suspect* a hang:
  it probes with a fresh connection (``SELECT 1``, some 20-60 ms on a loaded loopback); when
  the probe does not answer within the other two thirds, the database is hung, and the sockets
  of the connections waiting on it are shut down, so their calls fail at once (the API answers
  503) — a slow but healthy query is left alone, since its probe answers;
- after any such failure the guard is *open*: checkouts fail at once, without touching the
  network, while a background probe asks the database every ``PROBE_SECONDS``; its first answer
  closes the guard again. Without the background thread (an app never started), the guard
  lets one request try again after ``OPEN_SECONDS``.

The failures are the driver's own ``OperationalError``, which SQLAlchemy wraps as it wraps any
connection error, so the API's 503 handler and the workers' retries need nothing new.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError

from core.db import make_engine
from core.settings import Settings

log = logging.getLogger("core.db_guard")

PROBE_SECONDS = 0.5
"""While open, how often the background probe asks the database."""
OPEN_SECONDS = 1.0
"""How long a failure keeps the guard open when no watchdog runs to probe and close it."""
TICK_SECONDS = 0.1
"""How often the watchdog looks at the checked-out connections."""


class _Bounded(threading.Thread):
    """One call that may hang (a connect, a probe), run in a thread of its own so that the
    caller can stop waiting. A connection it returns after the caller gave up is closed."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True, name="db-guard-call")
        self.call = call
        self.lock = threading.Lock()
        self.value: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.abandoned = False
        self.start()

    def run(self) -> None:
        try:
            value = self.call()
        except BaseException as exc:  # handed to the waiting caller
            value, self.error = None, exc
        with self.lock:
            self.finished = True
            if not self.abandoned:
                self.value = value
                return
        if value is not None:  # nobody waits for this connection any more
            with contextlib.suppress(Exception):
                value.close()

    def result(self, seconds: float) -> tuple[bool, Any]:
        """``(True, value)`` when the call finished in time (re-raising its error), else
        ``(False, None)``, after which a late result is discarded."""
        self.join(seconds)
        with self.lock:
            if not self.finished:
                self.abandoned = True
                return False, None
        if self.error is not None:
            raise self.error
        return True, self.value


class DatabaseGuard:
    """The breaker and hang watchdog of one engine (see the module's docstring)."""

    def __init__(self, engine: Engine, hang_seconds: float) -> None:
        self.engine = engine
        self.dbapi = engine.dialect.loaded_dbapi
        self.hang_seconds = hang_seconds
        self.lock = threading.Lock()
        self.busy: dict[Any, tuple[float, Any]] = {}
        """Checked-out connections: pool record -> (since, DBAPI connection)."""
        self.open_until = 0.0
        self.probes = 0
        """Probes made so far (what the watchdog did, for the logs' readers and the tests)."""
        self.reason = ""
        self.connect_args: tuple[tuple[Any, ...], dict[str, Any]] | None = None
        self.stopping = threading.Event()
        self.watchdog: threading.Thread | None = None
        event.listen(engine, "do_connect", self._connect)
        event.listen(engine.pool, "checkout", self._checkout)
        event.listen(engine.pool, "checkin", self._checkin)

    @property
    def is_open(self) -> bool:
        return time.monotonic() < self.open_until

    def start(self) -> None:
        """Run the watchdog and the background probe (the API's lifespan)."""
        if self.watchdog is None:
            self.stopping.clear()
            self.watchdog = threading.Thread(target=self._watch, daemon=True, name="db-guard")
            self.watchdog.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.watchdog is not None:
            self.watchdog.join()
            self.watchdog = None
        with self.lock:
            self.open_until = min(self.open_until, time.monotonic() + OPEN_SECONDS)

    def _refusal(self) -> Exception:
        return self.dbapi.OperationalError(f"the database is unavailable ({self.reason})")

    def _trip(self, reason: str) -> None:
        """Open: until the background probe gets an answer, or for ``OPEN_SECONDS`` when no
        watchdog runs (then a request tries again)."""
        with self.lock:
            if not self.is_open:
                log.warning("database unavailable (%s): failing fast until it answers", reason)
            self.reason = reason
            running = self.watchdog is not None and not self.stopping.is_set()
            self.open_until = math.inf if running else time.monotonic() + OPEN_SECONDS

    def _connect(self, dialect: Any, _record: Any, cargs: tuple, cparams: dict) -> Any:
        """``do_connect``: refuse at once while open; otherwise connect, but stop waiting
        after ``hang_seconds`` (libpq's own timeout is 2 s at least)."""
        self.connect_args = (tuple(cargs), dict(cparams))
        if self.is_open:
            raise self._refusal()
        attempt = _Bounded(lambda: dialect.connect(*cargs, **cparams))
        try:
            done, connection = attempt.result(self.hang_seconds)
        except self.dbapi.OperationalError as exc:
            self._trip(f"connecting failed: {str(exc).strip().splitlines()[0]}")
            raise
        if not done:
            self._trip(f"no connection within {self.hang_seconds:g} s")
            raise self._refusal()
        return connection

    def _checkout(self, dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        """Refuse at once while open; otherwise ping the connection (this replaces the pool's
        pre-ping, which no watchdog could see), counted as busy from here to its checkin."""
        if self.is_open:
            raise self._refusal()  # the pool closes this connection; it is of no use now
        with self.lock:
            self.busy[record] = (time.monotonic(), dbapi_connection)
        try:
            self.engine.dialect.do_ping(dbapi_connection)
        except self.dbapi.Error as exc:  # stale or cut: the pool reconnects once
            raise DisconnectionError(str(exc)) from exc

    def _checkin(self, _dbapi_connection: Any, record: Any) -> None:
        with self.lock:
            self.busy.pop(record, None)

    def probe(self, seconds: float) -> bool:
        """Whether a fresh connection answers ``SELECT 1`` within ``seconds``."""
        if self.connect_args is None:
            return True  # never connected: nothing to suspect yet
        cargs, cparams = self.connect_args
        self.probes += 1

        def ask() -> None:
            with self.dbapi.connect(*cargs, **cparams) as connection:
                connection.execute("SELECT 1")

        try:
            done, _ = _Bounded(ask).result(seconds)
        except self.dbapi.Error:
            return False
        return done

    def _watch(self) -> None:
        """Every tick: probe for recovery while open, or for a hang when a checkout lasts.
        A round that fails unexpectedly is logged and the next one runs: while this thread
        lives, it is the only one that closes the guard."""
        last_probe = 0.0
        while not self.stopping.wait(TICK_SECONDS):
            if time.monotonic() - last_probe < PROBE_SECONDS:
                continue
            try:
                if self._look():
                    last_probe = time.monotonic()
            except Exception:
                log.exception("the database guard's round failed")

    def _look(self) -> bool:
        """One round of the watchdog; whether it probed."""
        now = time.monotonic()
        if self.is_open:
            if self.probe(self.hang_seconds):
                with self.lock:
                    self.open_until = 0.0
                log.warning("the database answers again")
            return True
        suspect = self.hang_seconds / 3
        with self.lock:
            waiting = [conn for since, conn in self.busy.values() if now - since > suspect]
        if not waiting:
            return False
        if not self.probe(self.hang_seconds - suspect):
            self._trip(f"no answer within {self.hang_seconds:g} s")
            for connection in waiting:
                _shut_down(connection)
        return True


def _shut_down(connection: Any) -> None:
    """Wake the thread blocked on ``connection``: its socket is shut down under it (the
    descriptor stays the driver's), so its call fails as a lost connection."""
    with contextlib.suppress(Exception):
        duplicate = socket.socket(fileno=os.dup(connection.pgconn.socket))
        with contextlib.closing(duplicate):
            duplicate.shutdown(socket.SHUT_RDWR)


def guarded_engine(settings: Settings) -> tuple[Engine, DatabaseGuard | None]:
    """The API's engine: on Postgres (psycopg), guarded, its pings done by the guard; on
    SQLite (a local file that is never away) a plain engine and no guard."""
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() != "postgresql" or url.get_driver_name() != "psycopg":
        return make_engine(settings), None
    engine = make_engine(settings, pre_ping=False)
    return engine, DatabaseGuard(engine, settings.database_hang_seconds)
