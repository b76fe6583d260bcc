"""Webhooks: Standard Webhooks signatures, and endpoints managed through a real server."""

from __future__ import annotations

import base64
import json
import time

import pytest
from xai_compress_client import Client, Dataset, JobFailed, Model, WebhookVerificationError
from xai_compress_client.webhooks import sign, verify

from core.webhook_delivery import sign as server_sign
from tests.client.conftest import FAILING, FAST
from tests.client.loopback import Reply, ScriptedServer

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
BODY = json.dumps({"type": "job.succeeded", "data": {"id": "job_1"}}).encode()
NOW = 1_800_000_000


def signed(body: bytes = BODY, secret: str = SECRET, timestamp: int = NOW) -> dict[str, str]:
    return {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(body, secret, "msg_1", timestamp),
    }


def test_a_signed_delivery_verifies_and_parses() -> None:
    assert verify(BODY, signed(), SECRET, now=NOW) == json.loads(BODY)
    capitalised = {name.title(): value for name, value in signed().items()}
    assert verify(BODY, capitalised, SECRET, now=NOW + 299)["data"]["id"] == "job_1"


def test_the_signature_matches_the_servers_signer() -> None:
    assert sign(BODY, SECRET, "msg_1", NOW) == server_sign(SECRET, "msg_1", NOW, BODY)


def test_any_valid_entry_among_several_signatures_is_enough() -> None:
    headers = signed()
    good = headers["webhook-signature"]
    other = sign(BODY, "whsec_" + base64.b64encode(b"rotated" * 5).decode(), "msg_1", NOW)
    headers["webhook-signature"] = f"v1a,c29tZXRoaW5n {other} {good}"
    assert verify(BODY, headers, SECRET, now=NOW)["type"] == "job.succeeded"


@pytest.mark.parametrize(
    ("body", "headers", "now", "reason"),
    [
        (BODY, signed(secret="whsec_" + base64.b64encode(b"x" * 32).decode()), NOW, "signature"),
        (BODY.replace(b"job_1", b"job_2"), signed(), NOW, "signature"),
        (BODY, {**signed(), "webhook-id": "msg_2"}, NOW, "signature"),
        (BODY, signed(), NOW + 301, "too old"),
        (BODY, signed(), NOW - 301, "in the future"),
        (BODY, {**signed(), "webhook-timestamp": "soon"}, NOW, "integer"),
        (BODY, {"webhook-id": "msg_1"}, NOW, "webhook-timestamp, webhook-signature"),
        (b"[1]", signed(b"[1]"), NOW, "object"),
    ],
)
def test_what_does_not_verify_is_refused_with_a_reason(
    body: bytes, headers: dict[str, str], now: int, reason: str
) -> None:
    with pytest.raises(WebhookVerificationError, match=reason):
        verify(body, headers, SECRET, now=now)


def test_the_default_clock_is_now() -> None:
    headers = signed(timestamp=int(time.time()))
    assert verify(BODY, headers, SECRET)["type"] == "job.succeeded"
    with pytest.raises(WebhookVerificationError, match="too old"):
        verify(BODY, signed(timestamp=int(time.time()) - 3600), SECRET)


def test_endpoints_receive_signed_deliveries(
    client: Client, uploaded: tuple[Model, Dataset]
) -> None:
    with ScriptedServer({("POST", "/hook"): [Reply(204)]}) as receiver:
        endpoint = client.webhooks.create(
            f"{receiver.url}/hook", events=["job.failed"], description="client tests"
        )
        try:
            assert endpoint.secret and endpoint.secret.startswith("whsec_")
            assert endpoint.events == ["job.failed"] and endpoint.description == "client tests"
            listed = [item for item in client.webhooks.list(limit=1) if item.id == endpoint.id]
            assert [item.secret for item in listed] == [None]  # shown only at creation

            job = client.jobs.create(*uploaded, **FAILING, **FAST)
            with pytest.raises(JobFailed):
                job.wait(timeout=60, progress=False, poll_interval=0.2)
            deadline = time.monotonic() + 30
            while not receiver.seen and time.monotonic() < deadline:
                time.sleep(0.1)
            [delivery] = receiver.seen
            payload = verify(delivery.body, delivery.headers, endpoint.secret)
            assert payload["type"] == "job.failed" and payload["data"]["id"] == job.id

            # the sender records the attempt once the answer is in, just after the receiver saw it
            [record] = client.webhooks.deliveries(endpoint.id)
            while not record.attempts and time.monotonic() < deadline:
                time.sleep(0.1)
                [record] = client.webhooks.deliveries(endpoint.id)
            assert (record.event, record.job_id, record.id) == (
                "job.failed", job.id, delivery.headers["webhook-id"]
            )  # fmt: skip
            assert [attempt.status_code for attempt in record.attempts] == [204]
        finally:
            client.webhooks.delete(endpoint.id)
    assert endpoint.id not in {item.id for item in client.webhooks.list()}
