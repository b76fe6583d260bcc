"""A stop that Python dropped is asked for again.

Why: a task's child is stopped by exceptions raised from signal handlers (``TimeLimitReached``
on SIGALRM, ``HandBack`` on SIGTERM). Python runs a handler in whatever code the main thread
is running, and when that is a weakref callback or a ``__del__`` (run by the garbage
collector, which the runtime triggers after every step), the exception cannot propagate: it
is printed ("Exception ignored in ...") and dropped. The soft limit's timer fires once, so
such a job ran on to the end past its limit (seen in CI: the job succeeded instead of failing
with ``time_limit``), and a dropped hand-back left the work to the pool process's kill.

Python reports every dropped exception to ``sys.unraisablehook``; for these two, the hook
has the signal sent again a moment later (not at once: ``signal.raise_signal`` runs the
handler before it returns, inside the hook), so the handler runs once more in the next code
that can take it. Should that handler run while the hook itself is still running (a loaded
machine can keep the hook off the CPU past the delay; CI saw it inside ``Thread.start``),
Python would drop the exception for good ("Exception ignored in sys.unraisablehook") and
never call the hook for it: the hook catches it and asks once more. That includes the time
the hook spends reporting other dropped exceptions through the hook before it (a child forked
from a busy process collects garbage it inherited, whose ``__del__`` may fail; CI saw the
hand-back lost this way once).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
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
    """Have the signal whose handler raises ``kind`` sent to this process shortly."""
    if kind is TimeLimitReached:
        signal.setitimer(signal.ITIMER_REAL, AGAIN_AFTER_SECONDS)
        return
    raise_on_sigterm()  # its handler ignores further SIGTERMs once it has run
    again = threading.Timer(AGAIN_AFTER_SECONDS, os.kill, (os.getpid(), signal.SIGTERM))
    again.daemon = True
    again.start()
