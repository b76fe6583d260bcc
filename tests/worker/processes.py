"""Real processes for the distributed tests: Celery workers (job and housekeeping), beat, and
throwaway Redis and Postgres servers that a test may stop, freeze and start again (never the
machine's own)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from core.settings import Settings
from tests.conftest import ROOT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition, timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(interval)


class RedisServer:
    """``redis-server`` on a port of its own, without persistence (as a broker that loses its
    queue when it restarts); ``stop`` and ``start`` again keep the port."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_until(self._answers, 10, "redis-server")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as connection:
                connection.sendall(b"PING\r\n")
                return connection.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


class PostgresServer:
    """A throwaway Postgres cluster (``initdb``) on a port of its own, in its own process
    group, so that a test can freeze it (SIGSTOP: the kernel still accepts connections and
    data, nobody answers) and thaw it. Run as the ``postgres`` user when the tests run as
    root (Postgres refuses root)."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="xai-pg-"))
        user = "postgres" if os.geteuid() == 0 else None
        if user:
            shutil.chown(self.root, user)
        data = self.root / "data"
        subprocess.run(
            ["initdb", "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E",
             "UTF8"], user=user, check=True, capture_output=True,
        )  # fmt: skip
        self.port = free_port()
        self.log = self.root / "postgres.log"
        self.process = subprocess.Popen(
            ["postgres", "-D", str(data), "-p", str(self.port), "-k", str(self.root),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
            user=user, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        wait_until(self._answers, 30, "postgres", interval=0.2)

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _answers(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        try:
            psycopg.connect(self.url.replace("+psycopg", ""), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def _processes(self) -> list[int]:
        """The postmaster, then its backends (each in a process group of its own)."""
        children = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[1]) == self.process.pid:  # the parent pid
                children.append(int(stat.parent.name))
        return [self.process.pid, *children]

    def freeze(self) -> None:
        for pid in self._processes():  # the postmaster first: it forks no backend after
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.thaw()
            self.process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def service_env(settings: Settings, broker: str) -> dict[str, str]:
    """The environment a deployed process reads its settings from."""
    return {
        **os.environ,
        "DATABASE_URL": settings.resolved_database_url,
        "REDIS_URL": broker,
        "STORAGE_PATH": str(settings.resolved_storage_path),
        "DATA_DIR": str(settings.data_dir),
        "STALE_JOB_SECONDS": str(settings.stale_job_seconds),
        "REAP_INTERVAL_SECONDS": str(settings.reap_interval_seconds),
        "SWEEP_INTERVAL_SECONDS": str(settings.sweep_interval_seconds),
        "DISPATCH_GRACE_SECONDS": str(settings.dispatch_grace_seconds),
        "QUEUE_NAME": settings.queue_name,
        "HOUSEKEEPING_QUEUE": settings.housekeeping_queue,
    }


class CeleryProcess:
    """``celery -A worker.celery_app ...`` in its own process group, logging to ``log``.

    With ``restart`` it is started again whenever it exits unasked, as the deployment's
    ``restart: unless-stopped`` does; ``exits`` keeps the last log lines of each such exit, so
    a test can say what happened (kombu has been seen to end a worker with an AttributeError
    while it reconnected to a Redis that had gone away)."""

    def __init__(
        self, env: dict[str, str], log: Path, args: list[str], ready: str = "ready.",
        restart: bool = False,
    ) -> None:  # fmt: skip
        self.env, self.log, self.args, self.ready = env, log, args, ready
        self.exits: list[str] = []
        self._stopping = False
        self._lock = threading.Lock()
        log.write_text("")
        self._launch()
        if restart:
            threading.Thread(target=self._supervise, daemon=True).start()

    def _launch(self) -> None:
        started = self.log.read_text().count(self.ready)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "worker.celery_app", *self.args],
            cwd=ROOT, env=self.env, stdout=self.log.open("a"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while self.log.read_text().count(self.ready) == started:
            assert self.process.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, f"{self.args[0]} did not start: {self.log}"
            time.sleep(0.2)

    def _supervise(self) -> None:
        while True:
            self.process.wait()
            with self._lock:
                if self._stopping:
                    return
                self.exits.append("\n".join(self.log.read_text().splitlines()[-5:]))
                time.sleep(1)
                self._launch()

    @classmethod
    def job_worker(cls, env: dict[str, str], log: Path) -> CeleryProcess:
        return cls(env, log, [
            "worker", "--queues", env["QUEUE_NAME"], "--concurrency", "1", "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--hostname", f"jobs-{log.stem}@%h",
        ])  # fmt: skip

    @classmethod
    def housekeeping(cls, env: dict[str, str], log: Path) -> CeleryProcess:
        """The light worker on the housekeeping queue, with beat inside it (``-B``) to save a
        process in tests; the deployment runs beat on its own. Restarted like the deployment's."""
        return cls(env, log, restart=True, args=[
            "worker", "--queues", env["HOUSEKEEPING_QUEUE"], "--pool", "threads",
            "--concurrency", "4", "--loglevel", "INFO", "-B", "--schedule",
            str(log.with_suffix(".beat")), "--without-gossip", "--without-mingle",
            "--hostname", f"housekeeping-{log.stem}@%h",
        ])  # fmt: skip

    def signal(self, number: int) -> None:
        os.killpg(self.process.pid, number)

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
        if self.process.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
