"""API under polling load: N clients polling one running job, against a real server.

    python -m benchmarks.api_load                      # embedded (SQLite), this checkout
    python -m benchmarks.api_load --mode distributed   # uvicorn x2 on Postgres + Redis
    python -m benchmarks.api_load --label before --server-root /path/to/older/checkout

Each poller loops ``GET /v1/jobs/{id}`` with ``--interval`` seconds between its requests
(closed loop: it waits for each answer), while a stand-in worker writes the job's progress
the way the runner does (the row twice a second, an event every two seconds, each in a write
transaction). The server runs in its own process; this process is the load generator and its
CPU time is reported beside the server's (both share the machine's cores, so the numbers are
lower bounds for a server with cores of its own). ``--server-root`` serves another checkout
(say main before a change) with the same load, so results compare like with like; every run
adds its rows to ``results/api_load.json`` and rewrites ``results/api_load.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import secrets
import statistics
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from benchmarks.serving import (
    Server,
    cpu_seconds,
    create_database,
    drop_database,
    quantiles_ms,
    rss_mib,
)
from core.db import make_engine, make_sessionmaker, upgrade_schema
from core.ids import new_id
from core.job_state import append_event
from core.keys import create_key, create_project, hash_key
from core.settings import Settings
from core.tables import ApiKey, DatasetRecord, Job, ModelRecord, utcnow

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REQUEST_TIMEOUT = 30.0
DRAIN_SECONDS = 10.0


def _seed(factory: sessionmaker[Session], key: str | None) -> tuple[str, str]:
    """A running job of the key's project (the key and project are created when the server
    did not make one) -> (key, job id)."""
    with factory() as session, session.begin():
        if key is None:
            project = create_project(session, f"load-{secrets.token_hex(3)}")
            key, project_id = create_key(session, project).key, project.id
        else:
            project_id = session.scalar(
                select(ApiKey.project_id).where(ApiKey.key_hash == hash_key(key))
            )
        upload = {"project_id": project_id, "size_bytes": 1, "sha256": "0" * 64, "status": "ready"}
        model = ModelRecord(
            id=new_id("model"), name="m", filename="m.pt2", storage_key="m", **upload
        )
        data = DatasetRecord(
            id=new_id("dataset"), name="d", filename="d.npz", storage_key="d", **upload
        )
        session.add_all([model, data])
        session.flush()
        job = Job(
            id=new_id("job"), project_id=project_id, model_id=model.id, dataset_id=data.id,
            spec={}, status="running", attempts=1, stage="attributing", started_at=utcnow(),
            heartbeat_at=utcnow(), worker="api_load",
        )  # fmt: skip
        session.add(job)
        session.flush()
        append_event(session, job, "status", {"status": "running"})
    return key, job.id


class StandInWorker:
    """Writes a running job's progress as the runner does, until stopped."""

    def __init__(self, factory: sessionmaker[Session], job_id: str) -> None:
        self.factory, self.job_id = factory, job_id
        self.stopped = threading.Event()
        self.writes = self.failed = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        step = 0
        while not self.stopped.wait(0.5):
            step += 1
            try:
                with self.factory() as session, session.begin():
                    job = session.get(Job, self.job_id)
                    job.progress = (step % 1000) / 1000
                    job.heartbeat_at = utcnow()
                    if step % 4 == 0:
                        append_event(session, job, "progress", {"progress": job.progress})
                self.writes += 1
            except OperationalError:  # "database is locked": the runner's write would fail too
                self.failed += 1


async def _poll(
    client: httpx.AsyncClient, path: str, interval: float, until: float,
    latencies: list[float], errors: Counter[str],
) -> None:  # fmt: skip
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        start = loop.time()
        try:
            response = await client.get(path)
            if response.status_code != 200:
                errors[f"HTTP {response.status_code}"] += 1
            else:
                latencies.append(loop.time() - start)
        except httpx.HTTPError as exc:
            errors[type(exc).__name__] += 1
        await asyncio.sleep(interval)


async def _level(url: str, key: str, job_id: str, pollers: int, args: Any) -> dict[str, Any]:
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=pollers, max_keepalive_connections=pollers)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = started + args.seconds
        tasks = [
            asyncio.create_task(
                _poll(client, f"/v1/jobs/{job_id}", args.interval, until, latencies, errors)
            )
            for _ in range(pollers)
        ]
        _, late = await asyncio.wait(tasks, timeout=args.seconds + DRAIN_SECONDS)
        for task in late:
            task.cancel()
        if late:
            errors["unfinished"] += len(late)
        elapsed = loop.time() - started
    return {
        "pollers": pollers,
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        **quantiles_ms(latencies, 0.50, 0.99),
        "max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "mean_ms": round(1000 * statistics.fmean(latencies), 1) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "seconds": round(elapsed, 1),
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    workdir = Path(tempfile.mkdtemp(prefix="api-load-"))
    database_url, database_name = create_database() if args.mode == "distributed" else (None, None)
    settings = Settings(database_url=database_url, redis_url=None, data_dir=workdir / "data")
    if database_url:
        upgrade_schema(settings)  # the distributed server expects a migrated database
    server = Server(args.mode, Path(args.server_root).resolve(), workdir, database_url)
    rows = []
    try:
        # an older checkout's server migrated only as far as it knows; the tables this
        # process writes are this checkout's (added columns are nullable: old code ignores them)
        upgrade_schema(settings)
        factory = make_sessionmaker(make_engine(settings))
        key_file = workdir / "data" / "api-key"
        key, job_id = _seed(factory, key_file.read_text().strip() if key_file.exists() else None)
        worker = StandInWorker(factory, job_id)
        worker.thread.start()
        for pollers in args.pollers:
            pids = server.pids()
            server_cpu, client_cpu = cpu_seconds(pids), time.process_time()
            writes, failed = worker.writes, worker.failed
            row = asyncio.run(_level(server.url, key, job_id, pollers, args))
            row["worker_writes"] = worker.writes - writes
            row["worker_write_errors"] = worker.failed - failed
            row["server_cpu_share"] = round((cpu_seconds(pids) - server_cpu) / row["seconds"], 2)
            row["client_cpu_share"] = round((time.process_time() - client_cpu) / row["seconds"], 2)
            row["server_rss_mib"] = round(rss_mib(server.pids()), 1)
            row |= {"label": args.label, "mode": args.mode, "interval_s": args.interval}
            print(json.dumps(row), flush=True)
            rows.append(row)
            time.sleep(args.pause)
        worker.stopped.set()
        worker.thread.join(timeout=10)
    finally:
        server.stop()
        if database_name:
            drop_database(database_name)
    return rows


COLUMNS = [
    ("label", "code"), ("mode", "mode"), ("pollers", "pollers"), ("requests", "requests"),
    ("rps", "req/s"), ("p50_ms", "p50 ms"), ("p99_ms", "p99 ms"), ("max_ms", "max ms"),
    ("errors", "errors"), ("server_cpu_ms_per_request", "server CPU ms/req"),
    ("server_cpu_share", "server CPU (cores)"),
    ("client_cpu_share", "client CPU (cores)"), ("server_rss_mib", "server RSS MiB"),
    ("worker_writes", "worker writes"), ("worker_write_errors", "failed writes"),
]  # fmt: skip


def _cpu_per_request(row: dict[str, Any]) -> float | None:
    """Server CPU milliseconds per answered request: what a request costs, whatever share of
    the machine the server got."""
    if not row["ok"]:
        return None
    return round(1000 * row["server_cpu_share"] * row["seconds"] / row["ok"], 1)


def _comparison(runs: list[dict[str, Any]]) -> list[str]:
    """The latest run of each code side by side, per mode and number of pollers."""
    latest = {(run_["rows"][0]["label"], run_["rows"][0]["mode"]): run_ for run_ in runs}
    lines = ["## Side by side (latest run of each code)", ""]
    for mode in sorted({mode for _, mode in latest}):
        labels = [label for label, m in latest if m == mode]
        lines += [
            f"{mode}: "
            + " vs ".join(f"**{label}**" for label in labels)
            + " (each cell: req/s, p50 / p99 ms, errors, server CPU ms/req)",
            "",
            "| pollers | " + " | ".join(labels) + " |",
            "|---|" + "---|" * len(labels),
        ]
        pollers = sorted(
            {row["pollers"] for label in labels for row in latest[label, mode]["rows"]}
        )
        for count in pollers:
            cells = []
            for label in labels:
                row = next((r for r in latest[label, mode]["rows"] if r["pollers"] == count), None)
                cells.append(
                    "-" if row is None
                    else f"{row['rps']}, {row['p50_ms']} / {row['p99_ms']}, {row['errors']}, "
                    f"{_cpu_per_request(row)}"
                )  # fmt: skip
            lines.append(f"| {count} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def write_results(rows: list[dict[str, Any]]) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    store = RESULTS / "api_load.json"
    runs = json.loads(store.read_text()) if store.exists() else []
    machine = f"{platform.machine()}, {os.cpu_count()} cores"
    when = datetime.now(UTC).isoformat(timespec="seconds")
    runs.append({"when": when, "machine": machine, "rows": rows})
    store.write_text(json.dumps(runs, indent=1) + "\n")
    lines = [
        "# API under polling load",
        "",
        "`python -m benchmarks.api_load` (see its docstring). Each poller loops "
        "`GET /v1/jobs/{id}` with a pause between its requests while a stand-in worker writes "
        "the job's progress; server and load generator share the machine's cores (other work "
        "ran on it too), so these are lower bounds. Errors: non-200 answers, transport errors, "
        'and requests still unanswered 10 s after the level ended. "server CPU (cores)" is the '
        'share of a core the server got; "server CPU ms/req" what one answered request cost.',
        "",
    ]
    lines += _comparison(runs)
    for run_ in runs:
        first = run_["rows"][0]
        lines += [
            f"## {run_['when']} — {first['label']}, {first['mode']}, "
            f"pause {first['interval_s']} s ({run_['machine']})",
            "",
            "| " + " | ".join(title for _, title in COLUMNS) + " | error kinds |",
            "|" + "---|" * (len(COLUMNS) + 1),
        ]
        for row in run_["rows"]:
            row = {**row, "server_cpu_ms_per_request": _cpu_per_request(row)}
            kinds = ", ".join(f"{k}: {v}" for k, v in row["error_kinds"].items()) or "-"
            cells = [str(row.get(key, "-")) for key, _ in COLUMNS] + [kinds]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    (RESULTS / "api_load.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["embedded", "distributed"], default="embedded")
    parser.add_argument("--pollers", type=int, nargs="+", default=[10, 30, 50, 100])
    parser.add_argument("--seconds", type=float, default=15.0, help="per level")
    parser.add_argument(
        "--interval", type=float, default=0.2, help="pause between a poller's requests"
    )
    parser.add_argument("--pause", type=float, default=2.0, help="between levels")
    parser.add_argument("--server-root", default=str(ROOT), help="the checkout to serve")
    parser.add_argument("--label", default="this checkout")
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args()
    rows = run(args)
    if not args.no_save:
        write_results(rows)


if __name__ == "__main__":
    main()
