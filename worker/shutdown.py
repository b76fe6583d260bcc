"""A worker asked to stop hands its work back instead of leaving it for the reaper.

Why: an orchestrator stops a worker with SIGTERM (a deploy, a scale-down) and kills it a
little later (compose: ``stop_grace_period``). Celery's warm shutdown waits for the running
task however long it runs, so a three-hour job is killed, stays ``running`` until the reaper
notices the missing heartbeat, and its message waits out the visibility timeout.

Three processes take part, each with its own step:

- the Celery main process gets SIGTERM (warm shutdown) and gives the running job or validation
  ``worker_shutdown_grace_seconds`` to finish; after that it sends SIGTERM to the pool process
  running it (``hand_back_after``);
- the pool process, waiting for its task's child (``worker.task_process``), forwards the
  request to the child (``stop_requested``) and waits ``HAND_BACK_SECONDS`` for it, then kills
  it;
- the child raises ``HandBack`` in its main thread (``raise_on_sigterm``): the job runner
  writes the job back to ``queued``, fenced by its attempt number, and removes what the attempt
  stored; a validation just stops (the upload stays ``pending``). The task then returns
  normally (its message is acknowledged) and the work is dispatched again through the outbox,
  to another worker.

The job runner lets ``HandBack`` in only around the work itself (``hand_back_gate``): a
request that comes while it claims the job or writes its end waits. Raised inside those
writes, it would leave the job ``running`` with a fresh heartbeat, so the next worker would
skip it as alive and it would wait for the reaper. A request that waited is raised when the
work begins, or dropped when the job has already ended.

A child that does not hand back within ``HAND_BACK_SECONDS`` (deep in one long native call, or
the database away) is killed: its job is the reaper's, as after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from collections.abc import Iterator

log = logging.getLogger("worker.shutdown")

HAND_BACK_SECONDS = 15.0
"""How long the pool process waits for its child to hand the work back before killing it."""


class HandBack(BaseException):
    """The worker is shutting down: stop and give the work back. A ``BaseException`` (like
    ``TimeLimitReached``), so that no ``except Exception`` on the way swallows it."""


SHUTTING_DOWN = "the worker is shutting down"


class _Gate:
    """Whether a hand-back request may be raised now, and whether one is waiting. Read and
    written in the main thread only (where Python runs signal handlers)."""

    open = True
    waiting = False


def raise_on_sigterm() -> None:
    """In a task's child: SIGTERM raises ``HandBack`` in the main thread, once (a second
    SIGTERM, from a whole process group signalled, is ignored while the first is handled);
    while ``hand_back_gate`` is closed, the request waits instead."""

    def hand_back(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if not _Gate.open:
            _Gate.waiting = True
            return
        raise HandBack(SHUTTING_DOWN)

    signal.signal(signal.SIGTERM, hand_back)


@contextlib.contextmanager
def hand_back_gate(open_: bool) -> Iterator[None]:
    """Closed (``False``) around writes of the work's state, open (``True``) around the work
    itself: a request that waited is raised on opening. The previous state comes back on
    exit."""
    previous = _Gate.open
    _Gate.open = open_
    try:
        if open_ and _Gate.waiting:
            _Gate.waiting = False
            raise HandBack(SHUTTING_DOWN)
        yield
    finally:
        _Gate.open = previous


@contextlib.contextmanager
def stop_requested() -> Iterator[threading.Event]:
    """In a pool process, while it waits for a task's child: an event set by SIGTERM (the
    main process asking for the work back). Outside the main thread (the embedded server's
    dispatcher thread) no handler can be installed, and the event is never set."""
    requested = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield requested
        return
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: requested.set())
    try:
        yield requested
    finally:
        signal.signal(signal.SIGTERM, previous)


def hand_back_after(grace_seconds: float, tasks: frozenset[str]) -> None:
    """In the Celery main process: once a shutdown starts, give running ``tasks`` (jobs,
    validations) ``grace_seconds`` to finish, then ask their pool processes for them back."""
    from celery import signals

    def on_shutdown(**_: object) -> None:
        timer = threading.Timer(grace_seconds, _ask_back, args=(tasks,))
        timer.daemon = True
        timer.start()

    signals.worker_shutting_down.connect(on_shutdown, weak=False)


def _ask_back(tasks: frozenset[str]) -> None:
    from celery.worker import state

    for request in tuple(state.active_requests):
        pid = request.worker_pid
        if request.name in tasks and pid and pid != os.getpid():
            log.warning("asking %s[%s] back from pool process %d", request.name, request.id, pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
