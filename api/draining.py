"""Tell the app when the server starts to stop, before its in-flight requests have drained.

Why: uvicorn's graceful shutdown (SIGTERM, or Ctrl-C) stops accepting connections and waits for
every open one to finish before the app's lifespan hears of it. Requests finish by themselves
(an upload streaming in completes), but an event stream follows its job until the job ends,
which can be hours: it would hold the drain open until the orchestrator kills the process.
The app therefore chains its own step in front of the server's signal handler.
"""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import Callable

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def on_stop_signal(callback: Callable[[], None]) -> None:
    """Run ``callback`` in the running event loop when the server is asked to stop, then let
    the server's own handler act. Only where a server handles the signal from the main thread
    (uvicorn does); elsewhere (a test client's thread, no handler) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for number in SIGNALS:
        server_handler = signal.getsignal(number)
        if not callable(server_handler):
            continue  # default or ignored: the signal keeps its meaning

        def handler(signum: int, frame: object, server_handler=server_handler) -> None:
            loop.call_soon_threadsafe(callback)
            server_handler(signum, frame)

        signal.signal(number, handler)
