"""The service's processes for the load benchmarks, and how their cost is measured.

Shared by ``benchmarks.api_load`` and ``benchmarks.service_load``: every process (the API, a
Celery worker, the load generator) runs in a process group of its own, so it can be stopped as
a whole and its CPU time and memory read from /proc for it alone. Server and load generator
share the machine's cores, so what is measured is a lower bound for a server with its own.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

POSTGRES = os.environ.get("BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("BENCH_REDIS", "redis://127.0.0.1:6379")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes (and their reaped children), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        total += sum(int(value) for value in fields[11:15]) / ticks
    return total


def process_tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    found = [pid]
    if children.exists():
        for child in children.read_text().split():
            found += process_tree(int(child))
    return found


def rss_mib(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except FileNotFoundError:
            continue
    return total / 1024


def quantiles_ms(latencies: Sequence[float], *qs: float) -> dict[str, float | None]:
    """``{"p50_ms": ..., ...}`` of latencies in seconds (nearest rank; None without any)."""
    ordered = sorted(latencies)

    def at(q: float) -> float | None:
        if not ordered:
            return None
        return round(1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)

    return {f"p{round(100 * q)}_ms": at(q) for q in qs}


class Group:
    """A command in a process group of its own, its output in ``log``."""

    def __init__(self, command: list[str], cwd: Path, env: dict[str, str], log: Path) -> None:
        self.log = log
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def pids(self) -> list[int]:
        return process_tree(self.process.pid)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 30) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


class Server(Group):
    """The API, served from ``root`` (a checkout): the embedded launcher, or uvicorn with
    ``api_workers`` processes on Postgres and Redis; ready once /healthz answers."""

    def __init__(
        self, mode: str, root: Path, workdir: Path, database_url: str | None,
        env: dict[str, str] | None = None, api_workers: int = 2,
    ) -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "PYTHONPATH": str(root), **(env or {})}
        if mode == "embedded":
            command = [sys.executable, "-m", "launcher.embedded", "--port", str(self.port)]
        else:
            full_env.setdefault("REDIS_URL", REDIS)
            full_env |= {"DATABASE_URL": database_url or "", "DATA_DIR": str(workdir / "data")}
            command = [
                sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
                "--port", str(self.port), "--workers", str(api_workers), "--log-level", "warning",
            ]  # fmt: skip
        super().__init__(command, workdir, full_env, workdir / "server.log")
        deadline = time.monotonic() + 120
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(self.log.read_text())
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start:\n" + self.log.read_text())
            time.sleep(0.3)


def create_database() -> tuple[str, str]:
    """A fresh database on the machine's Postgres -> (its SQLAlchemy URL, its name)."""
    import psycopg

    name = f"xai_load_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://{POSTGRES.removeprefix('postgresql://')}/{name}", name


def drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
