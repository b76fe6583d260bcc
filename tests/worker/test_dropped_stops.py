"""A stop raised where Python drops exceptions (a weakref callback) is raised again, also when
its second signal comes while the hook is still running."""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
import weakref

import pytest

from compression.errors import TimeLimitReached
from worker import dropped_stops
from worker.dropped_stops import redeliver_dropped_stops
from worker.shutdown import HandBack, raise_on_sigterm
from worker.task_process import _ask_to_stop_after

RAISED_IN_ORDINARY_CODE = 10
NEVER_RAISED = 11


def _slow_report(unraisable: object) -> None:
    time.sleep(1.0)  # the stop's signal arrives while another drop is reported


def _dropped_then_waits(signum: int, stumbles: int, another_drop: bool) -> None:
    """In a forked child: the stop's handler runs inside a weakref callback (dropped). The
    hook's first ``stumbles`` requests meet the signal inside the hook itself; with
    ``another_drop``, an exception dropped right after the stop is being reported (slowly, by
    the hook that was there before) when the signal comes."""
    sys.unraisablehook = _slow_report
    raise_on_sigterm()
    _ask_to_stop_after(3600)
    redeliver_dropped_stops()
    ask_again = dropped_stops._ask_again

    def stumbling(kind: type[BaseException]) -> None:
        nonlocal stumbles
        ask_again(kind)
        if stumbles:
            stumbles -= 1
            time.sleep(1.0)  # the signal arrives while the hook is still here

    dropped_stops._ask_again = stumbling

    class Held:
        pass

    def fails(_: object) -> None:
        raise ValueError("a __del__ that fails")

    held = Held()
    handler = signal.getsignal(signum)
    references = [weakref.ref(held, fails)] if another_drop else []
    references.append(weakref.ref(held, lambda _: handler(signum, None)))  # called first
    try:
        del held  # the handler raises in the callback: Python prints and drops it
        time.sleep(30)
    except (HandBack, TimeLimitReached):
        raise SystemExit(RAISED_IN_ORDINARY_CODE) from None
    raise SystemExit(NEVER_RAISED)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGALRM], ids=["hand back", "time"])
@pytest.mark.parametrize(
    ("stumbles", "another_drop"),
    [(0, False), (2, False), (0, True)],
    ids=["hook returns first", "signal in the hook", "signal while another drop is reported"],
)
def test_a_dropped_stop_is_raised_again_in_ordinary_code(
    signum: int, stumbles: int, another_drop: bool
) -> None:
    child = multiprocessing.get_context("fork").Process(
        target=_dropped_then_waits, args=(signum, stumbles, another_drop)
    )
    started = time.monotonic()
    child.start()
    child.join(30)
    assert child.exitcode == RAISED_IN_ORDINARY_CODE
    assert time.monotonic() - started < stumbles * 1.0 + 5
