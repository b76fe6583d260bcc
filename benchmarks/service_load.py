"""The whole service under load: pollers, uploads and jobs at once, against a real API and
worker.

    nice -n 10 python -m benchmarks.service_load                 # distributed, then embedded
    python -m benchmarks.service_load --mode embedded --pollers 5 --uploads 1 --jobs 1 \\
        --idle-jobs 1 --seconds 5 --no-save                       # a smoke run

Distributed: uvicorn with ``--api-workers`` processes on a fresh database of the machine's
Postgres and an empty database index of its Redis, a Celery job worker (concurrency 1), the
housekeeping worker and beat, sharing local storage. Embedded: the launcher (SQLite, the
in-process worker).

1. The digits CNN and dataset (``compression.examples``) are uploaded and validated.
2. Idle worker: ``--idle-jobs`` jobs run one after the other, ``--idle-pause`` s apart; each
   one's queued->running latency is ``started_at - created_at`` as the server recorded them.
3. The load window (``--seconds``): the load generator, a process in a process group of its
   own, runs ``--pollers`` closed-loop pollers of ``GET /v1/jobs/{id}`` (``--interval`` s
   between a poller's requests) across the jobs so far, and spreads ``--uploads`` dataset
   uploads and ``--jobs`` job submissions evenly over the window.
4. Drain: until every job and upload of the window has ended (at most ``--drain`` s).

Reported per mode: requests/s, p50/p95/p99 and errors of each kind of request, the API's peak
RSS, queued->running latencies (idle, and under load), the jobs and uploads that ended well,
and the CPU seconds of the load generator, the API and the workers during the window. All
share the machine's cores (with whatever else runs on it), so the numbers are lower bounds
for a server with cores of its own. Each run is added to ``results/service_load.json`` and
``results/service_load.md`` is rewritten.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from benchmarks.serving import (
    REDIS,
    Group,
    Server,
    cpu_seconds,
    create_database,
    drop_database,
    quantiles_ms,
    rss_mib,
)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
REQUEST_TIMEOUT = 60.0
SPEC = {
    "steps": [{"type": "prune_weights", "sparsity": 0.5}],
    "evaluation": {"latency_repeats": 3},
    "attribution": {"samples": 64},
}
"""A small job: a few seconds of CPU on the digits CNN."""
KINDS = ("poll", "upload", "submit")
QUANTILES = (0.50, 0.95, 0.99)


# -- the load generator (its own process) ------------------------------------------------


async def _generate(config: dict[str, Any]) -> dict[str, Any]:
    latencies: dict[str, list[float]] = {kind: [] for kind in KINDS}
    errors: dict[str, Counter[str]] = {kind: Counter() for kind in KINDS}
    created: dict[str, list[str]] = {"jobs": [], "datasets": []}
    dataset = Path(config["dataset_path"]).read_bytes()
    connections = config["pollers"] + config["uploads"] + config["jobs"]
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {config['key']}"}
    async with httpx.AsyncClient(
        base_url=config["url"], headers=headers, limits=limits, timeout=REQUEST_TIMEOUT
    ) as client:
        loop = asyncio.get_running_loop()
        started = loop.time()
        until = started + config["seconds"]

        async def timed(kind: str, request: Awaitable[httpx.Response]) -> Any:
            begun = loop.time()
            try:
                response = await request
            except httpx.HTTPError as exc:
                errors[kind][type(exc).__name__] += 1
                return None
            if response.status_code >= 400:
                errors[kind][f"HTTP {response.status_code}"] += 1
                return None
            latencies[kind].append(loop.time() - begun)
            return response.json()

        async def poll(index: int) -> None:
            while loop.time() < until:
                ids = config["poll_ids"] + created["jobs"]
                await timed("poll", client.get(f"/v1/jobs/{ids[index % len(ids)]}"))
                await asyncio.sleep(config["interval"])

        async def upload() -> None:
            files = {"file": ("digits.npz", dataset)}
            if body := await timed("upload", client.post("/v1/datasets", files=files)):
                created["datasets"].append(body["id"])

        async def submit() -> None:
            job = {"model_id": config["model_id"], "dataset_id": config["dataset_id"], **SPEC}
            if body := await timed("submit", client.post("/v1/jobs", json=job)):
                created["jobs"].append(body["id"])

        async def spread(count: int, action: Callable[[], Awaitable[None]]) -> None:
            """``count`` actions started evenly over the window, each on its own."""
            tasks = []
            for n in range(count):
                await asyncio.sleep(max(0.0, started + config["seconds"] * n / count - loop.time()))
                tasks.append(asyncio.create_task(action()))
            await asyncio.gather(*tasks)

        work = [asyncio.create_task(poll(i)) for i in range(config["pollers"])]
        work += [
            asyncio.create_task(spread(config["uploads"], upload)),
            asyncio.create_task(spread(config["jobs"], submit)),
        ]
        _, late = await asyncio.wait(work, timeout=config["seconds"] + REQUEST_TIMEOUT)
        for task in late:
            task.cancel()
        elapsed = loop.time() - started
    return {
        "seconds": round(elapsed, 1),
        "unfinished_tasks": len(late),
        "cpu_seconds": round(time.process_time(), 2),
        "created": created,
        **{kind: _stats(latencies[kind], errors[kind], elapsed) for kind in KINDS},
    }


def _stats(latencies: list[float], errors: Counter[str], elapsed: float) -> dict[str, Any]:
    return {
        "ok": len(latencies),
        "rps": round(len(latencies) / elapsed, 1),
        **quantiles_ms(latencies, *QUANTILES),
        "max_ms": round(1000 * max(latencies), 1) if latencies else None,
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
    }


# -- the service under load --------------------------------------------------------------


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class Service:
    """The processes of one mode, a client of its API, and where it keeps its data."""

    def __init__(self, mode: str, workdir: Path, api_workers: int) -> None:
        self.mode, self.workdir = mode, workdir
        self.workers: list[Group] = []
        self.database_name: str | None = None
        self.redis_url: str | None = None
        if mode == "embedded":
            self.server = Server("embedded", ROOT, workdir, None)
            key = (workdir / "data" / "api-key").read_text().strip()
        else:
            database_url, self.database_name = create_database()
            self.redis_url = _empty_redis_database()
            env = {
                **os.environ, "PYTHONPATH": str(ROOT), "DATABASE_URL": database_url,
                "REDIS_URL": self.redis_url, "DATA_DIR": str(workdir / "data"),
            }  # fmt: skip
            key = _migrate_and_key(database_url)
            self.server = Server(
                "distributed", ROOT, workdir, database_url, env, api_workers=api_workers
            )
            celery = [sys.executable, "-m", "celery", "-A", "worker.celery_app"]
            for name, args in (
                ("jobs", ["worker", "--queues", "compress", "--concurrency", "1",
                          "--prefetch-multiplier", "1", "-n", "jobs@%h"]),
                ("housekeeping", ["worker", "--queues", "housekeeping", "--pool", "threads",
                                  "--concurrency", "4", "-n", "housekeeping@%h"]),
                ("beat", ["beat", "--schedule", str(workdir / "beat-schedule")]),
            ):  # fmt: skip
                command = [*celery, *args, "--loglevel", "WARNING"]
                self.workers.append(Group(command, workdir, env, workdir / f"{name}.log"))
        self.api = httpx.Client(
            base_url=self.server.url, headers={"Authorization": f"Bearer {key}"},
            timeout=REQUEST_TIMEOUT,
        )  # fmt: skip
        self.key = key

    def upload(self, kind: str, path: Path) -> str:
        response = self.api.post(f"/v1/{kind}", files={"file": (path.name, path.read_bytes())})
        response.raise_for_status()
        return response.json()["id"]

    def wait(self, path: str, done: set[str], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while (body := self.api.get(path).json())["status"] not in done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} still {body['status']} after {timeout} s")
            time.sleep(0.2)
        return body

    def submit(self, model_id: str, dataset_id: str) -> str:
        job = {"model_id": model_id, "dataset_id": dataset_id, **SPEC}
        response = self.api.post("/v1/jobs", json=job)
        response.raise_for_status()
        return response.json()["id"]

    def stop(self) -> None:
        self.api.close()
        for group in [self.server, *self.workers]:
            group.stop()
        if self.database_name:
            drop_database(self.database_name)
        if self.redis_url:
            import redis

            redis.Redis.from_url(self.redis_url).flushdb()


def _empty_redis_database() -> str:
    """A database index of the machine's Redis that holds nothing (so no one else's queues)."""
    import redis

    for index in range(15, 7, -1):
        url = f"{REDIS}/{index}"
        if redis.Redis.from_url(url).dbsize() == 0:
            return url
    raise RuntimeError(f"no empty database index on {REDIS}")


def _migrate_and_key(database_url: str) -> str:
    from core.db import make_engine, make_sessionmaker, upgrade_schema
    from core.keys import create_key, create_project
    from core.settings import Settings

    settings = Settings(database_url=database_url, redis_url=None)
    upgrade_schema(settings)
    engine = make_engine(settings)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            return create_key(session, create_project(session, "service-load")).key
    finally:
        engine.dispose()


class Sampler:
    """The API's resident memory, sampled every ``interval`` seconds in a thread."""

    def __init__(self, group: Group, interval: float = 1.0) -> None:
        self.group, self.interval = group, interval
        self.peak = 0.0
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stopped.wait(self.interval):
            self.peak = max(self.peak, rss_mib(self.group.pids()))

    def stop(self) -> float:
        self.stopped.set()
        self.thread.join()
        return round(self.peak, 1)


def _queued_to_running_ms(jobs: list[dict[str, Any]]) -> list[float]:
    return [
        round(1000 * (_timestamp(job["started_at"]) - _timestamp(job["created_at"])), 1)
        for job in jobs
        if job["started_at"]
    ]


def run_mode(mode: str, args: argparse.Namespace, inputs: tuple[Path, Path]) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix=f"service-load-{mode}-"))
    model_path, dataset_path = inputs
    began = time.monotonic()
    service = Service(mode, workdir, args.api_workers)
    try:
        model_id = service.upload("models", model_path)
        dataset_id = service.upload("datasets", dataset_path)
        for kind, record in (("models", model_id), ("datasets", dataset_id)):
            service.wait(f"/v1/{kind}/{record}", {"ready", "invalid"}, args.drain)
        idle = []
        for _ in range(args.idle_jobs):
            # idle: nothing queued, and the process of the last task has exited (it ends a
            # little after its record does; the next task waits for it)
            time.sleep(args.idle_pause)
            job_id = service.submit(model_id, dataset_id)
            idle.append(service.wait(f"/v1/jobs/{job_id}", {"succeeded", "failed"}, args.drain))
        config = {
            "url": service.server.url, "key": service.key, "poll_ids": [j["id"] for j in idle],
            "model_id": model_id, "dataset_id": dataset_id, "dataset_path": str(dataset_path),
            "pollers": args.pollers, "interval": args.interval, "seconds": args.seconds,
            "uploads": args.uploads, "jobs": args.jobs,
        }  # fmt: skip
        (workdir / "load.json").write_text(json.dumps(config))
        server_cpu = cpu_seconds(service.server.pids())
        worker_cpu = cpu_seconds([pid for w in service.workers for pid in w.pids()])
        sampler = Sampler(service.server)
        generator = Group(
            [sys.executable, "-m", "benchmarks.service_load", "--generate",
             str(workdir / "load.json"), str(workdir / "load-result.json")],
            ROOT, {**os.environ, "PYTHONPATH": str(ROOT)}, workdir / "generator.log",
        )  # fmt: skip
        if generator.process.wait(timeout=args.seconds + 2 * REQUEST_TIMEOUT + 30) != 0:
            raise RuntimeError((workdir / "generator.log").read_text())
        load = json.loads((workdir / "load-result.json").read_text())
        row: dict[str, Any] = {
            "mode": mode,
            "api_processes": args.api_workers if mode == "distributed" else 1,
            "pollers": args.pollers,
            "interval_s": args.interval,
            "uploads": args.uploads,
            "jobs": args.jobs,
            "window_s": load["seconds"],
            "api_peak_rss_mib": sampler.stop(),
            "cpu_s": {
                "generator": load["cpu_seconds"],
                "api": round(cpu_seconds(service.server.pids()) - server_cpu, 1),
                "workers": round(
                    cpu_seconds([pid for w in service.workers for pid in w.pids()]) - worker_cpu,
                    1,
                ),
            },
            **{kind: load[kind] for kind in KINDS},
            "unfinished_tasks": load["unfinished_tasks"],
            "idle_pause_s": args.idle_pause,
            "idle_queued_to_running_ms": _queued_to_running_ms(idle),
            "idle_job_seconds": [
                round(_timestamp(j["finished_at"]) - _timestamp(j["started_at"]), 1) for j in idle
            ],
        }
        drained = time.monotonic()
        jobs, datasets = [], []
        try:
            jobs = [
                service.wait(f"/v1/jobs/{job}", {"succeeded", "failed", "cancelled"}, args.drain)
                for job in load["created"]["jobs"]
            ]
            datasets = [
                service.wait(f"/v1/datasets/{d}", {"ready", "invalid"}, args.drain)
                for d in load["created"]["datasets"]
            ]
        except TimeoutError as exc:
            row["drain_timeout"] = str(exc)
        row |= {
            "jobs_succeeded": sum(job["status"] == "succeeded" for job in jobs),
            "uploads_ready": sum(d["status"] == "ready" for d in datasets),
            "loaded_queued_to_running_ms": _queued_to_running_ms(jobs),
            "drain_s": round(time.monotonic() - drained, 1),
            "total_s": round(time.monotonic() - began, 1),
        }
        print(json.dumps(row), flush=True)
        return row
    finally:
        service.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _inputs(directory: Path, samples: int) -> tuple[Path, Path]:
    """The digits CNN and the first ``samples`` digits (a job's CPU grows with them)."""
    import numpy as np

    from compression.examples import write_examples

    model, data = write_examples(directory, epochs=2)
    with np.load(data) as arrays:
        np.savez(data, x=arrays["x"][:samples], y=arrays["y"][:samples])
    return model, data


# -- results -----------------------------------------------------------------------------


def _cell(stats: dict[str, Any]) -> str:
    return (
        f"{stats['ok']} ok, {stats['rps']}/s, {stats['p50_ms']} / {stats['p95_ms']} / "
        f"{stats['p99_ms']} ms, {stats['errors']} errors"
    )


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def write_results(rows: list[dict[str, Any]], directory: Path = RESULTS) -> None:
    """Add this run to ``service_load.json`` in ``directory`` and render the table again."""
    directory.mkdir(parents=True, exist_ok=True)
    store = directory / "service_load.json"
    runs = json.loads(store.read_text()) if store.exists() else []
    runs.append({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "load_average_1m_at_end": round(os.getloadavg()[0], 1),
        "niceness": os.nice(0),
        "rows": rows,
    })  # fmt: skip
    store.write_text(json.dumps(runs, indent=1) + "\n")
    render(directory)


def render(directory: Path = RESULTS) -> None:
    """``service_load.md`` from the runs in ``service_load.json``, newest first."""
    runs = json.loads((directory / "service_load.json").read_text())
    lines = [
        "# The service under load: pollers, uploads and jobs at once",
        "",
        "`python -m benchmarks.service_load` (`make bench-api`; see its docstring). Cells: "
        "answered requests, requests/s, p50 / p95 / p99 latency, errors (non-2xx answers and "
        "transport errors). The load generator runs in a process group of its own; its CPU "
        "seconds during the window are shown beside the API's and the workers'. Everything "
        "shares the machine's cores with other work, so these are lower bounds for a server "
        "with cores of its own. Goals (issue 10): 0 errors; queued->running < 200 ms with an "
        "idle worker. The job worker runs one job at a time, so under load a job's "
        "queued->running includes the jobs and upload validations queued before it.",
        "",
    ]
    for run in reversed(runs):
        nice = f", everything at nice {run['niceness']}" if run.get("niceness") else ""
        lines += [
            f"## {run['when']} ({run['machine']}, 1-minute load average at the end "
            f"{run['load_average_1m_at_end']}{nice})",
            "",
            "| mode | pollers (pause s) | polls | uploads | job submissions | API peak RSS MiB "
            "| idle queued->running ms (median; each; after a pause of) "
            "| under load queued->running ms (first; max, behind the others) | jobs ok "
            "| uploads ready | CPU s in the window: generator / API / workers | window s "
            "| idle job s |",
            "|" + "---|" * 13,
        ]
        for row in run["rows"]:
            idle = row["idle_queued_to_running_ms"]
            loaded = row["loaded_queued_to_running_ms"]
            cpu = row["cpu_s"]
            cells = [
                f"{row['mode']} ({row['api_processes']} API processes)",
                f"{row['pollers']} ({row['interval_s']})",
                _cell(row["poll"]), _cell(row["upload"]), _cell(row["submit"]),
                str(row["api_peak_rss_mib"]),
                f"{_median(idle)}; {', '.join(map(str, idle))}; {row['idle_pause_s']} s",
                f"{loaded[0] if loaded else None}; {max(loaded) if loaded else None}",
                f"{row['jobs_succeeded']}/{row['jobs']}",
                f"{row['uploads_ready']}/{row['uploads']}",
                f"{cpu['generator']} / {cpu['api']} / {cpu['workers']}"
                if row["mode"] == "distributed"
                else f"{cpu['generator']} / {cpu['api']} (with its in-process worker) / -",
                str(row["window_s"]),
                ", ".join(map(str, row["idle_job_seconds"])),
            ]  # fmt: skip
            lines.append("| " + " | ".join(cells) + " |")
        errors = {
            f"{row['mode']} {kind}": row[kind]["error_kinds"]
            for row in run["rows"]
            for kind in KINDS
            if row[kind]["error_kinds"]
        }
        lines += ["", f"Error kinds: {json.dumps(errors) if errors else 'none'}.", ""]
    (directory / "service_load.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["distributed", "embedded", "both"], default="both")
    parser.add_argument("--pollers", type=int, default=200)
    parser.add_argument("--interval", type=float, default=1.0, help="pause between polls")
    parser.add_argument("--uploads", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--idle-jobs", type=int, default=2)
    parser.add_argument("--idle-pause", type=float, default=5.0, help="seconds between idle jobs")
    parser.add_argument("--samples", type=int, default=400, help="digits in the dataset")
    parser.add_argument("--seconds", type=float, default=40.0, help="the load window")
    parser.add_argument("--drain", type=float, default=300.0, help="most seconds to wait")
    parser.add_argument("--api-workers", type=int, default=2, help="uvicorn processes")
    parser.add_argument("--no-save", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--generate", nargs=2, metavar=("CONFIG", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:  # this process is the load generator
        config = json.loads(Path(args.generate[0]).read_text())
        Path(args.generate[1]).write_text(json.dumps(asyncio.run(_generate(config))))
        return
    modes = ["distributed", "embedded"] if args.mode == "both" else [args.mode]
    directory = Path(tempfile.mkdtemp(prefix="service-load-inputs-"))
    try:
        inputs = _inputs(directory, args.samples)
        rows = [run_mode(mode, args, inputs) for mode in modes]
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if not args.no_save:
        write_results(rows, args.results)


if __name__ == "__main__":
    main()
