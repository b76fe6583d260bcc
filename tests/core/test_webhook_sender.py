"""The webhook sender on Postgres: bounded concurrency, a claim per delivery, no duplicates,
one slow or huge endpoint never delaying the others, failures kept to their own delivery.
Receivers listen on 127.0.0.1 only (the policy allows loopback here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from core.db import make_engine, make_sessionmaker
from core.ids import new_id
from core.outbound import OutboundPolicy
from core.settings import Settings
from core.tables import (
    DatasetRecord,
    Job,
    ModelRecord,
    Project,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    utcnow,
)  # fmt: skip
from core.webhook_delivery import new_secret
from core.webhook_sender import WebhookSender, claim_seconds, deliver_due


class Receiver:
    """A loopback endpoint; ``behaviour(handler)`` answers each request (default: 200)."""

    def __init__(self, behaviour: Any = None) -> None:
        self.received: list[tuple[str, float]] = []  # (webhook-id, monotonic time)
        self.active = 0
        self.most_active = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["content-length"]))
                with receiver.lock:
                    receiver.active += 1
                    receiver.most_active = max(receiver.most_active, receiver.active)
                    receiver.received.append((self.headers["webhook-id"], time.monotonic()))
                try:
                    (behaviour or _ok)(self)
                finally:
                    with receiver.lock:
                        receiver.active -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ids(self) -> list[str]:
        return [delivery_id for delivery_id, _ in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _ok(handler: BaseHTTPRequestHandler) -> None:
    handler.send_response(200)
    handler.send_header("content-length", "0")
    handler.end_headers()


@pytest.fixture
def settings(clean_postgres: str, tmp_path: Any) -> Settings:
    return Settings(
        database_url=clean_postgres,
        data_dir=tmp_path,
        webhook_allow_private_networks=True,
        webhook_timeout_seconds=2.0,
        webhook_retry_base_seconds=0.2,
        webhook_concurrency=4,
        webhook_per_endpoint_concurrency=2,
    )


@pytest.fixture
def factory(settings: Settings) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(settings)
    yield make_sessionmaker(engine)
    engine.dispose()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for receiver in made:
        receiver.close()


def _job(session: Session) -> Job:
    project = Project(id=new_id("project"), name=new_id("job"))
    upload = {"name": "x", "filename": "x", "storage_key": "k", "size_bytes": 1, "sha256": "0"}
    model = ModelRecord(id=new_id("model"), project_id=project.id, **upload)
    dataset = DatasetRecord(id=new_id("dataset"), project_id=project.id, **upload)
    job = Job(
        id=new_id("job"), project_id=project.id, model_id=model.id, dataset_id=dataset.id,
        spec={}, status="succeeded",
    )  # fmt: skip
    for row in (project, model, dataset, job):  # no relationships: insert in order
        session.add(row)
        session.flush()
    return job


def _deliveries(factory: sessionmaker[Session], urls: list[str], per_url: int = 1) -> list[str]:
    """``per_url`` due deliveries to an endpoint at each URL; their ids, in order."""
    ids = []
    with factory() as session, session.begin():
        job = _job(session)
        for url in urls:
            endpoint = WebhookEndpoint(
                id=new_id("webhook"), project_id=job.project_id, url=url, secret=new_secret(),
                events=["job.succeeded"],
            )  # fmt: skip
            session.add(endpoint)
            session.flush()
            for _ in range(per_url):
                delivery = WebhookDelivery(
                    id=new_id("delivery"), endpoint_id=endpoint.id, job_id=job.id,
                    event="job.succeeded", payload={"type": "job.succeeded"},
                )  # fmt: skip
                session.add(delivery)
                ids.append(delivery.id)
    return ids


def _status(factory: sessionmaker[Session]) -> dict[str, tuple[str, int]]:
    with factory() as session:
        rows = session.scalars(select(WebhookDelivery))
        return {row.id: (row.status, row.attempts) for row in rows}


def _attempts(factory: sessionmaker[Session], delivery_id: str) -> list[WebhookAttempt]:
    with factory() as session:
        return list(
            session.scalars(
                select(WebhookAttempt)
                .where(WebhookAttempt.delivery_id == delivery_id)
                .order_by(WebhookAttempt.attempt)
            )
        )


def test_deliveries_go_out_concurrently_within_the_bound(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    release = threading.Event()

    def held(handler: BaseHTTPRequestHandler) -> None:
        release.wait(10)
        _ok(handler)

    hosts = [Receiver(held) for _ in range(5)]
    receivers.extend(hosts)
    ids = _deliveries(factory, [r.url for r in hosts], per_url=3)  # 15 deliveries
    sender = WebhookSender(factory, settings)
    try:
        assert sender.tick() == 4  # webhook_concurrency
        deadline = time.monotonic() + 10
        while sum(len(r.received) for r in hosts) < 4:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        assert sender.tick() == 0  # no slot is free, nothing more starts
        time.sleep(0.3)
        assert sum(len(r.received) for r in hosts) == 4
        release.set()
        sender.run_until_idle(budget_seconds=20)
    finally:
        sender.close()
    assert max(r.most_active for r in hosts) <= settings.webhook_per_endpoint_concurrency
    assert sorted(i for r in hosts for i in r.ids()) == sorted(ids)  # each exactly once
    assert set(_status(factory).values()) == {("succeeded", 1)}


def test_a_hanging_endpoint_never_delays_the_others(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    def hang(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(6)  # past the 2 s timeout

    slow, fast = Receiver(hang), Receiver()
    receivers.extend([slow, fast])
    slow_ids = _deliveries(factory, [slow.url], per_url=6)  # older: first in line
    sender = WebhookSender(factory, settings)
    try:
        sender.tick()
        time.sleep(0.3)
        fast_ids = _deliveries(factory, [fast.url], per_url=3)
        started = time.monotonic()
        sender.tick()
        deadline = started + 2
        while len(fast.received) < 3:
            assert time.monotonic() < deadline, "deliveries to a fast endpoint waited"
            time.sleep(0.02)
        assert fast.received[-1][1] - started < 1.0
    finally:
        sender.close()
    assert slow.most_active == settings.webhook_per_endpoint_concurrency  # its slots, no more
    status = _status(factory)
    assert {status[i] for i in fast_ids} == {("succeeded", 1)}
    tried = [i for i in slow_ids if status[i][1] == 1]
    assert 2 <= len(tried) <= 4 and all(status[i][0] == "pending" for i in slow_ids)
    attempt = _attempts(factory, tried[0])[0]
    assert attempt.status_code is None and "Timeout" in attempt.error
    assert 1900 < attempt.duration_ms < 4000


def test_a_huge_answer_is_read_only_up_to_the_cap(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    sent = {"bytes": 0}

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("content-length", str(10 * 1024**3))
        handler.end_headers()
        chunk = b"x" * 65536
        try:
            for _ in range(10 * 1024**3 // len(chunk)):
                handler.wfile.write(chunk)
                sent["bytes"] += len(chunk)
        except OSError:
            pass  # the sender hung up, as it should

    receivers.append(Receiver(endless))
    [delivery_id] = _deliveries(factory, [receivers[0].url])
    started = time.monotonic()
    assert deliver_due(factory, settings) == 1
    assert time.monotonic() - started < 5
    assert _status(factory)[delivery_id] == ("succeeded", 1)
    time.sleep(0.2)
    assert sent["bytes"] < 64 * 1024**2  # socket buffers, not 10 GiB


def test_two_senders_never_send_a_delivery_twice(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    def slowish(handler: BaseHTTPRequestHandler) -> None:
        time.sleep(0.05)
        _ok(handler)

    hosts = [Receiver(slowish) for _ in range(4)]
    receivers.extend(hosts)
    ids = _deliveries(factory, [r.url for r in hosts], per_url=10)
    senders = [WebhookSender(factory, settings) for _ in range(3)]
    threads = [
        threading.Thread(target=sender.run_until_idle, args=(30,)) for sender in senders
    ]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for sender in senders:
        sender.close()
    received = [i for r in hosts for i in r.ids()]
    assert sorted(received) == sorted(ids)  # 40 deliveries, 40 requests
    assert set(_status(factory).values()) == {("succeeded", 1)}


def test_a_claim_outlasts_an_attempt_and_an_expired_claim_is_taken_over(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    assert claim_seconds(settings) > 4 * settings.webhook_timeout_seconds
    receivers.append(Receiver())
    [delivery_id] = _deliveries(factory, [receivers[0].url])
    with factory() as session, session.begin():  # a sender claimed it, then died
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() + timedelta(seconds=claim_seconds(settings)))
        )
    assert deliver_due(factory, settings, budget_seconds=0.5) == 0
    assert receivers[0].received == []
    with factory() as session, session.begin():  # ... and its claim ran out
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    assert deliver_due(factory, settings) == 1
    assert receivers[0].ids() == [delivery_id]


def test_a_bad_stored_url_fails_only_its_own_delivery(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    receivers.append(Receiver())
    good = receivers[0].url
    # rows stored before the URL rules existed: CRLF, a non-http scheme, credentials
    bad = [good + "\r\nX-Injected: 1", "gopher://127.0.0.1:70/_x", good.replace("//", "//u:p@")]
    ids = _deliveries(factory, [*bad, good])
    # retries wait 10 minutes: however slow this round, it makes exactly one attempt each
    deliver_due(factory, settings.model_copy(update={"webhook_retry_base_seconds": 600.0}))
    status = _status(factory)
    assert status[ids[-1]] == ("succeeded", 1)
    assert receivers[0].ids() == [ids[-1]]
    for delivery_id in ids[:-1]:
        assert status[delivery_id] == ("pending", 1)  # retried later, like any failure
        assert _attempts(factory, delivery_id)[0].error.startswith("refused: ")


def test_the_address_rule_applies_at_delivery_time(
    settings: Settings, factory: sessionmaker[Session], receivers: list[Receiver]
) -> None:
    """A name that was public when the endpoint was created and now resolves inside (DNS
    rebinding) is refused when called; the receiver never hears from the sender."""
    receivers.append(Receiver())
    port = receivers[0].server.server_port
    [delivery_id] = _deliveries(factory, [f"http://hooks.invalid:{port}/hook"])
    guarded = settings.model_copy(update={"webhook_allow_private_networks": False})
    policy = OutboundPolicy(resolver=lambda host, port: ["127.0.0.1"])
    assert deliver_due(factory, guarded, policy) == 1
    assert receivers[0].received == []
    [attempt] = _attempts(factory, delivery_id)
    assert "127.0.0.1" in attempt.error and "public internet" in attempt.error
