"""Each task (a job, a validation) runs in a child process under a memory and a time limit.

Why: a model or dataset from a stranger can need more memory or time than the machine has. In
the process that serves the API (embedded mode) an out-of-memory kill would take the API down,
and a long job holding the interpreter would leave requests unanswered; in a Celery worker a
process killed by the kernel is redelivered by the broker, again and again. In a child:

- the address space is capped (``RLIMIT_AS``, ``task_memory_limit_mb``), so an allocation past
  it fails inside the child (``MemoryError``, torch's allocator error), which the task records
  as ``resource_limit``;
- a job is asked to stop at ``job_soft_time_limit`` (the runner records ``time_limit``) and the
  child is killed at ``job_time_limit`` (``validation_time_limit`` for a validation);
- a child that dies without recording its end (killed by the kernel, crashed) is recorded here,
  by the parent, with a stable code, so nothing stays ``running`` or ``pending``.

The embedded API process starts children from a fork server (a clean process that imported
the worker once, never the threaded API), so a child costs a fork, not an interpreter start;
a Celery pool process (already one per task) forks its child directly.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import resource
import signal
import time
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Literal

from compression.errors import TimeLimitReached
from core.dispatch import RUN_JOB, VALIDATE_MODEL
from core.job_state import TERMINAL, fail, set_status
from core.settings import Settings
from core.tables import DatasetRecord, Job, ModelRecord
from worker.dropped_stops import redeliver_dropped_stops
from worker.resources import Resources, build_resources
from worker.runner import TRANSIENT
from worker.shutdown import HAND_BACK_SECONDS, HandBack, raise_on_sigterm, stop_requested
from worker.tasks import HANDLERS
from worker.validation import end_upload

log = logging.getLogger("worker.task_process")

StartMethod = Literal["forkserver", "fork"]
PR_SET_PDEATHSIG = 1
MEMORY_EXIT = 75
"""Exit status of a child whose task hit the memory limit before it could record it."""
TRANSIENT_EXIT = 76
"""Exit status of a child stopped by the service's own dependencies (database, storage)."""
HANDED_BACK_EXIT = 77
"""Exit status of a child that gave its work back because the worker is shutting down."""


class ChildTransientFailure(Exception):
    """The child met a dependency outage before its task could record anything: the task is
    retried (Celery) or dispatched again by the outbox sweeper (embedded); the record is
    left as it is."""


def run_in_child(resources: Resources, task: str, record_id: str, start: StartMethod) -> str:
    """Run ``HANDLERS[task](record_id)`` in a child under the limits; return how it ended
    (``done``; ``handed_back`` or ``killed`` when the worker shut down meanwhile, see
    ``worker.shutdown``; or the code the record was failed with)."""
    settings = resources.settings
    hard = settings.job_time_limit if task == RUN_JOB else settings.validation_time_limit
    child = _context(start).Process(
        target=_child_main,
        args=(task, record_id, settings, dict(os.environ)),
        name=f"{task}:{record_id}",
        daemon=True,  # a stopping API does not wait for a job; the job is requeued at start
    )
    _start(child)
    deadline = time.monotonic() + hard
    with stop_requested() as stopping:
        while child.is_alive() and not stopping.is_set() and time.monotonic() < deadline:
            child.join(min(POLL_SECONDS, max(0.0, deadline - time.monotonic())))
    if stopping.is_set() and child.is_alive():
        return _hand_back(child, task, record_id)
    if child.is_alive():
        child.kill()
        child.join()
        code, message = "time_limit", f"The work ran past {hard} s and was stopped."
    elif child.exitcode == 0:
        return "done"
    elif child.exitcode == HANDED_BACK_EXIT:  # the whole process group got SIGTERM at once
        return "handed_back"
    elif child.exitcode == TRANSIENT_EXIT:
        raise ChildTransientFailure(f"task {task}({record_id}) met a dependency outage")
    elif child.exitcode in (MEMORY_EXIT, -signal.SIGKILL):
        limit = settings.task_memory_limit_mb
        code = "resource_limit"
        message = f"The work needed more than the {limit} MiB of memory a task may use."
        if child.exitcode == -signal.SIGKILL:
            message = "The work was killed, most likely for using too much memory."
    else:
        log.error("task %s(%s) exited with %s", task, record_id, child.exitcode)
        code = "internal_error"
        message = "The worker process stopped unexpectedly; the worker log has details."
    _record_end(resources, task, record_id, code, message)
    return code


POLL_SECONDS = 0.5
"""How often the parent looks for a shutdown request while its child works."""


def _hand_back(child: BaseProcess, task: str, record_id: str) -> str:
    """The worker is shutting down: ask the child to give its work back (``HandBack``), wait
    ``HAND_BACK_SECONDS`` for it, then kill it (its job is then the reaper's)."""
    log.warning("task %s(%s): the worker is shutting down, handing it back", task, record_id)
    child.terminate()
    child.join(HAND_BACK_SECONDS)
    if child.is_alive():
        child.kill()
        child.join()
        log.error("task %s(%s) did not hand back in time; killed", task, record_id)
        return "killed"
    if child.exitcode == 0:  # finished meanwhile, or a job being cancelled was cancelled
        return "done"
    return "handed_back" if child.exitcode == HANDED_BACK_EXIT else "killed"


def _start(child: BaseProcess) -> None:
    """Start ``child``, also from a Celery pool process. multiprocessing refuses children to
    a process marked daemonic (as pool processes are) so that none is orphaned when it
    exits; this child is always joined, or killed, before the task returns, so the mark is
    lifted for the start only."""
    config = multiprocessing.current_process()._config
    daemonic = config.get("daemon")
    config["daemon"] = False
    try:
        child.start()
    finally:
        config["daemon"] = daemonic


def _context(start: StartMethod) -> BaseContext:
    context = multiprocessing.get_context(start)
    if start == "forkserver":
        context.set_forkserver_preload(["worker.task_process"])
    return context


def _child_main(task: str, record_id: str, settings: Settings, environ: dict[str, str]) -> None:
    """The child: the parent's environment (a fork server keeps the one it started with),
    the limits, then the task with resources of its own (no connection crosses a fork)."""
    os.environ.clear()
    os.environ.update(environ)
    _die_with_parent()
    raise_on_sigterm()
    apply_memory_limit(settings)
    if task == RUN_JOB:
        _ask_to_stop_after(settings.job_soft_time_limit)
    redeliver_dropped_stops()
    resources = build_resources(settings)
    try:
        if HANDLERS[task](resources, record_id) == "handed_back":
            os._exit(HANDED_BACK_EXIT)
    except HandBack:  # before the job was claimed, or a validation: nothing to write
        os._exit(HANDED_BACK_EXIT)
    except MemoryError:  # raised before the task could record it (a task records its own)
        os._exit(MEMORY_EXIT)
    except TRANSIENT:
        log.warning("task %s(%s) met a dependency outage", task, record_id, exc_info=True)
        os._exit(TRANSIENT_EXIT)
    finally:
        resources.close()


def _die_with_parent() -> None:
    """A child outliving its parent would hold a job nobody records: Linux kills it with the
    parent (PR_SET_PDEATHSIG); the job is requeued when the service starts again."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the limits still apply
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def apply_memory_limit(settings: Settings) -> None:
    """Cap this process's address space (0 = no cap). A CUDA worker is never capped: CUDA
    reserves far more address space than memory, so GPU workers rely on their container's
    memory limit instead."""
    import torch  # loaded already (the fork server preloads the worker)

    on_gpu = settings.worker_device != "cpu" and torch.cuda.is_available()
    if settings.task_memory_limit_mb and not on_gpu:
        limit = settings.task_memory_limit_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _ask_to_stop_after(seconds: int) -> None:
    """The soft limit: the job's main thread gets TimeLimitReached, recorded as time_limit."""

    def stop(signum: int, frame: object) -> None:
        raise TimeLimitReached(f"past {seconds} s")

    signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def _record_end(resources: Resources, task: str, record_id: str, code: str, message: str) -> None:
    """End the record of a child that could not: a job ``failed`` (or ``cancelled`` when a
    cancel was pending), an upload ``invalid`` with its bytes deleted."""
    if task != RUN_JOB:
        table = ModelRecord if task == VALIDATE_MODEL else DatasetRecord
        end_upload(resources, table, record_id, "invalid", code, message)
        return
    with resources.sessionmaker() as session, session.begin():
        job = session.get(Job, record_id, with_for_update=True)
        if job is None or job.status in TERMINAL:
            return
        if job.status == "cancelling":
            set_status(session, job, "cancelled", reason=message)
        else:
            fail(session, job, code, message)
