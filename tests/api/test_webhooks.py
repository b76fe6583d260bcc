"""Signed webhooks on terminal job states, retried on failure, every attempt recorded."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.main import create_app
from core.dispatch import RUN_JOB
from core.ids import new_id
from core.outbound import OutboundPolicy
from core.settings import Settings
from core.tables import Job, ModelRecord, WebhookDelivery
from core.webhook_sender import deliver_due
from tests.api.helpers import assert_problem, sign_in, wait_for
from worker.in_process import InProcessDispatcher
from worker.resources import build_resources
from worker.tasks import HANDLERS

SPEC = {
    "steps": [{"type": "prune_filters", "ratio": 0.5}],
    "attribution": {"samples": 128},
    "evaluation": {"latency_repeats": 3},
}


class Receiver:
    """A loopback HTTP endpoint that answers the given status codes in turn (then 200)."""

    def __init__(self, statuses: list[int]) -> None:
        self.statuses = list(statuses)
        self.requests: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while len(self.requests) < count:
            assert time.monotonic() < deadline, f"{len(self.requests)} of {count} deliveries"
            time.sleep(0.05)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # receivers listen on 127.0.0.1: allowed here only (the default refuses loopback)
    return settings.model_copy(
        update={"webhook_retry_base_seconds": 0.2, "webhook_allow_private_networks": True}
    )


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    receiver = Receiver([])
    yield receiver
    receiver.server.shutdown()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    """Standard Webhooks verification, written out independently of the server's signer."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    assert headers["webhook-signature"] == f"v1,{expected}"
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60


def test_one_signed_delivery_per_terminal_state_with_retries(
    client: TestClient, uploaded: dict[str, str], receiver: Receiver
) -> None:
    created = client.post("/v1/webhooks", json={"url": receiver.url}).json()
    secret = created["secret"]
    assert secret.startswith("whsec_") and created["id"].startswith("whe_")
    assert created["events"] == ["job.succeeded", "job.failed", "job.cancelled"]
    listed = client.get("/v1/webhooks").json()["data"]
    assert [w["id"] for w in listed] == [created["id"]] and listed[0]["secret"] is None

    receiver.statuses = [500, 500]
    job = client.post("/v1/jobs", json={**uploaded, **SPEC}).json()
    wait_for(client, f"/v1/jobs/{job['id']}", {"succeeded"})
    receiver.wait(3)
    time.sleep(0.5)
    assert len(receiver.requests) == 3  # two 500s, then the delivery that succeeded
    ids = {headers["webhook-id"] for headers, _ in receiver.requests}
    assert len(ids) == 1  # retries of one delivery keep its id
    for headers, body in receiver.requests:
        _verify(secret, headers, body)
    payload = json.loads(receiver.requests[-1][1])
    assert payload["type"] == "job.succeeded"
    assert payload["data"]["id"] == job["id"] and payload["data"]["status"] == "succeeded"

    deliveries = client.get(f"/v1/webhooks/{created['id']}/deliveries").json()["data"]
    assert len(deliveries) == 1
    delivery = deliveries[0]
    assert delivery["status"] == "succeeded" and delivery["event"] == "job.succeeded"
    assert [(a["attempt"], a["status_code"]) for a in delivery["attempts"]] == [
        (1, 500), (2, 500), (3, 200)
    ]  # fmt: skip
    assert delivery["attempts"][0]["error"] == "HTTP 500"


def test_event_filters_and_cancelled_jobs(
    client: TestClient, dispatcher: InProcessDispatcher, uploaded: dict[str, str],
    receiver: Receiver,
) -> None:  # fmt: skip
    client.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.cancelled"]})
    dispatcher.stop()  # the job stays queued, so cancelling it is immediate
    job = client.post("/v1/jobs", json={**uploaded, **SPEC}).json()
    client.post(f"/v1/jobs/{job['id']}/cancel")
    client.post(f"/v1/jobs/{job['id']}/cancel")  # twice: still one event, one delivery
    deliver_due(client.app.state.sessionmaker, client.app.state.settings)
    assert len(receiver.requests) == 1
    assert json.loads(receiver.requests[0][1])["type"] == "job.cancelled"


def test_the_runner_leaves_sending_to_the_sender(
    settings: Settings, client: TestClient, dispatcher: InProcessDispatcher,
    uploaded: dict[str, str], receiver: Receiver,
) -> None:  # fmt: skip
    """The job's terminal transaction records the delivery; only the sender sends it (the
    runner used to send inline as well, and duplicates went out)."""
    dispatcher.stop()  # no embedded sender either
    client.post("/v1/webhooks", json={"url": receiver.url})
    resources = build_resources(settings)  # a worker without a sender beside it
    with client.app.state.sessionmaker() as session, session.begin():
        job_id = _new_job(session, uploaded)
    assert HANDLERS[RUN_JOB](resources, job_id) == "succeeded"
    time.sleep(0.3)
    assert receiver.requests == []
    with client.app.state.sessionmaker() as session:
        [delivery] = session.scalars(
            select(WebhookDelivery).where(WebhookDelivery.job_id == job_id)
        )
        assert (delivery.status, delivery.attempts) == ("pending", 0)
    assert deliver_due(client.app.state.sessionmaker, settings) == 1
    assert [h["webhook-id"] for h, _ in receiver.requests] == [delivery.id]
    resources.close()


def _new_job(session: Session, uploaded: dict[str, str]) -> str:
    project_id = session.get(ModelRecord, uploaded["model_id"]).project_id
    job = Job(id=new_id("job"), project_id=project_id, spec=SPEC, **uploaded)
    session.add(job)
    return job.id


def test_a_failed_receiver_is_retried_until_attempts_run_out(
    settings: Settings, client: TestClient, uploaded: dict[str, str], receiver: Receiver
) -> None:
    receiver.statuses = [500] * 10
    hook = client.post("/v1/webhooks", json={"url": receiver.url, "events": ["job.failed"]}).json()
    bad = {**SPEC, "steps": [{"type": "prune_weights", "layers": ["missing"]}]}
    job = client.post("/v1/jobs", json={**uploaded, **bad}).json()
    wait_for(client, f"/v1/jobs/{job['id']}", {"failed"})
    receiver.wait(settings.webhook_max_attempts, timeout=90)
    time.sleep(1.5)
    delivery = client.get(f"/v1/webhooks/{hook['id']}/deliveries").json()["data"][0]
    assert delivery["status"] == "failed"
    assert len(delivery["attempts"]) == settings.webhook_max_attempts == len(receiver.requests)


def test_webhook_management_errors(client: TestClient) -> None:
    bad = client.post("/v1/webhooks", json={"url": "ftp://example.com/x"})
    assert_problem(bad, 422, "validation_error")
    assert_problem(client.delete("/v1/webhooks/whe_missing"), 404, "not_found")
    client.app.state.outbound_policy = OutboundPolicy(
        allow_private=True, resolver=lambda host, port: ["93.184.215.14"]
    )
    created = client.post("/v1/webhooks", json={"url": "https://hooks.example.com/x"}).json()
    assert client.delete(f"/v1/webhooks/{created['id']}").status_code == 204
    assert client.get("/v1/webhooks").json()["data"] == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.example.com/x\r\nX-Injected: 1",
        "http://hooks.example.com/\x00",
        "http://hooks.example.com/ x",
        "http://user:secret@hooks.example.com/x",
        "javascript:alert(1)",
    ],
)
def test_malformed_urls_are_refused_at_creation(client: TestClient, url: str) -> None:
    client.app.state.outbound_policy = OutboundPolicy(resolver=lambda host, port: ["8.8.8.8"])
    body = assert_problem(client.post("/v1/webhooks", json={"url": url}), 422, "validation_error")
    assert "URL" in body["detail"]
    assert client.get("/v1/webhooks").json()["data"] == []


@pytest.mark.parametrize(
    ("url", "resolves_to"),
    [
        ("http://127.0.0.1:9/x", None),
        ("http://169.254.169.254/latest/meta-data/", None),
        ("http://[::ffff:169.254.169.254]/latest", None),
        ("https://cgnat.example.com/x", "100.64.0.1"),
        ("https://intranet.example.com/x", "10.0.0.8"),
        ("https://mapped.example.com/x", "::ffff:127.0.0.1"),
    ],
)
def test_the_guard_is_on_by_default(
    app_client: TestClient, url: str, resolves_to: str | None
) -> None:
    """With the service's default settings, internal targets are refused (names resolved by
    a stub, so no lookup leaves the machine)."""
    assert Settings().webhook_allow_private_networks is False
    default = Settings(
        database_url=app_client.app.state.settings.database_url, redis_url=None
    )  # fmt: skip
    with TestClient(create_app(default, InProcessDispatcher(None))) as other:  # type: ignore[arg-type]
        sign_in(other, "guarded")
        other.app.state.outbound_policy = OutboundPolicy(
            resolver=lambda host, port: [resolves_to or host]
        )
        body = assert_problem(
            other.post("/v1/webhooks", json={"url": url}), 422, "webhook_url_not_allowed"
        )
        assert "public internet" in body["detail"]
        assert other.get("/v1/webhooks").json()["data"] == []
