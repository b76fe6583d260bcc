"""A stop that Python dropped is asked for again.

Why: a task's child is stopped by exceptions raised from signal handlers (``TimeLimitReached``
on SIGALRM, ``HandBack`` on SIGTERM). Python runs a handler in whatever code the main thread
is running, and when that is a weakref callback or a ``__del__`` (run by the garbage
collector, which the runtime triggers after every step), the exception cannot propagate: it
is printed ("Exception ignored in ...") and dropped. The soft limit's timer fires once, so
such a job ran on to the end past its limit (seen in CI: the job succeeded instead of failing
with ``time_limit``), and a dropped hand-back left the work to the pool process's kill.

Python reports every dropped exception to ``sys.unraisablehook``; for these two, the hook
arms the process's real-time timer so that the handler runs once more, 10 ms later, in the
next code that can take it (not at once: ``signal.raise_signal`` runs the handler before it
returns, inside the hook). A hand-back comes back through the timer too, not through a thread
sending SIGTERM: in a child forked from a process with many threads, starting a thread can
hang (seen in the full test suite: ``Thread.start`` in the hook never returned).

Should the handler run while the hook itself still runs (a loaded machine can keep it off the
CPU past the delay; or the hook before it is slow to report another dropped exception),
Python would drop that exception for good ("Exception ignored in sys.unraisablehook") and not
call the hook for it: the hook catches a stop raised inside itself and asks once more.
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any

from compression.errors import TimeLimitReached
from worker.shutdown import HandBack, raise_on_sigterm

AGAIN_AFTER_SECONDS = 0.01
"""How long after a drop the signal comes again: out of the callback that dropped it."""


STOPS = (TimeLimitReached, HandBack)


def redeliver_dropped_stops() -> None:
    """In a task's child, after its handlers are installed: a ``TimeLimitReached`` or a
    ``HandBack`` dropped by Python raises its signal again; other dropped exceptions go to
    the hook that was there before."""
    previous = sys.unraisablehook

    def hook(unraisable: Any) -> None:
        again = None
        try:
            if unraisable.exc_type in STOPS:
                again = unraisable.exc_type
            else:  # another dropped exception, reported as before
                previous(unraisable)
        except STOPS as stop:  # a stop's signal came while this hook ran: not to be lost
            again = type(stop)
        if again is not None:
            _ask_again_from_the_hook(again)

    sys.unraisablehook = hook


def _ask_again_from_the_hook(kind: type[BaseException]) -> None:
    """``_ask_again``, asking once more whenever the signal comes before the hook is left."""
    while True:
        try:
            _ask_again(kind)
            return  # no check for signals between here and the hook's end
        except STOPS as stop:
            kind = type(stop)


def _ask_again(kind: type[BaseException]) -> None:
    """Have the stop raised again shortly: the soft limit's timer re-armed, or, for a hand-back,
    the timer armed with a handler that runs the SIGTERM handler (which again looks at the
    gate, ``worker.shutdown``). The job's soft limit is given up then: it is ending."""
    if kind is HandBack:
        raise_on_sigterm()  # its handler ignores further SIGTERMs once it has run
        signal.signal(signal.SIGALRM, _hand_back_now)
    signal.setitimer(signal.ITIMER_REAL, AGAIN_AFTER_SECONDS)


def _hand_back_now(signum: int, frame: FrameType | None) -> None:
    """SIGALRM standing in for the SIGTERM that was dropped."""
    hand_back = signal.getsignal(signal.SIGTERM)
    assert callable(hand_back)
    hand_back(signal.SIGTERM, frame)
