"""Webhooks: manage endpoints (``client.webhooks``) and verify what arrives at them.

The service signs every delivery the Standard Webhooks way: ``webhook-id``,
``webhook-timestamp`` (unix seconds) and ``webhook-signature`` (space-separated
``v1,<base64 HMAC-SHA256>`` entries) over ``"{id}.{timestamp}." + body``, keyed by the
base64-decoded part of the endpoint's ``whsec_...`` secret. A receiver calls ``verify``
with the raw body, before parsing it: re-serialised JSON would not match the signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from xai_compress_client.errors import WebhookVerificationError
from xai_compress_client.objects import WebhookDelivery, WebhookEndpoint, from_api
from xai_compress_client.transport import Transport

EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
SECRET_PREFIX = "whsec_"


def sign(payload: bytes, secret: str, msg_id: str, timestamp: int) -> str:
    """The ``webhook-signature`` value (``v1,<base64>``) the service sends for this body."""
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def verify(
    payload: bytes,
    headers: Mapping[str, str],
    secret: str,
    *,
    tolerance: float = 300,
    now: float | None = None,
) -> dict[str, Any]:
    """The parsed JSON body of an authentic, fresh delivery; WebhookVerificationError if not.

    ``tolerance`` (seconds either way) bounds the age of the timestamp, which is signed, so
    a captured delivery cannot be replayed later.
    """
    lowered = {name.lower(): value for name, value in headers.items()}
    missing = [
        name
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature")
        if not lowered.get(name)
    ]
    if missing:
        raise WebhookVerificationError(f"missing header(s): {', '.join(missing)}")
    try:
        timestamp = int(lowered["webhook-timestamp"])
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not an integer") from None
    skew = (time.time() if now is None else now) - timestamp
    if abs(skew) > tolerance:
        when = "too old" if skew > 0 else "in the future"
        raise WebhookVerificationError(f"timestamp is {when} ({abs(skew):.0f} s > {tolerance} s)")
    expected = sign(payload, secret, lowered["webhook-id"], timestamp).encode()
    offered = lowered["webhook-signature"].split()
    if not any(hmac.compare_digest(entry.encode(), expected) for entry in offered):
        raise WebhookVerificationError("no valid v1 signature for this body and secret")
    try:
        body = json.loads(payload)
    except ValueError as exc:
        raise WebhookVerificationError(f"the signed body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise WebhookVerificationError("the signed body is not a JSON object")
    return body


class Webhooks:
    """``client.webhooks``: endpoints the service notifies when a job ends."""

    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(
        self, url: str, events: Sequence[str] | None = None, description: str | None = None
    ) -> WebhookEndpoint:
        """Register ``url`` for ``events`` (default: all); keep the returned ``secret``."""
        body: dict[str, Any] = {"url": url}
        if events is not None:
            body["events"] = [*events]
        if description is not None:
            body["description"] = description
        response = self._transport.request("POST", "/v1/webhooks", json=body)
        return from_api(WebhookEndpoint, response.json())

    def list(self, *, limit: int = 20) -> Iterator[WebhookEndpoint]:
        for item in self._transport.paginate("/v1/webhooks", {"limit": limit}):
            yield from_api(WebhookEndpoint, item)

    def delete(self, webhook_id: str) -> None:
        self._transport.request("DELETE", f"/v1/webhooks/{webhook_id}")

    def deliveries(self, webhook_id: str, *, limit: int = 20) -> Iterator[WebhookDelivery]:
        """Every delivery to the endpoint, newest first, each with all of its attempts."""
        path = f"/v1/webhooks/{webhook_id}/deliveries"
        for item in self._transport.paginate(path, {"limit": limit}):
            yield from_api(WebhookDelivery, item)
