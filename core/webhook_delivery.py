"""Signed webhooks on job completion, the Standard Webhooks way: the outbox side.

Each delivery is POSTed with ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the endpoint's secret. A
delivery row is created in the same transaction as the job's terminal status, so no event is
lost, and at most one per endpoint, job and event, so a repeated transition sends nothing
twice. Its id is the ``webhook-id`` of every attempt, the key receivers deduplicate on.
``core.webhook_sender`` attempts due deliveries, records every attempt, and retries with
exponential backoff until a 2xx answer or the attempts run out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.ids import new_id
from core.outbound import MalformedURL, OutboundPolicy, TargetRefused
from core.problems import Problem
from core.settings import Settings
from core.tables import Job, WebhookDelivery, WebhookEndpoint, utcnow

EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_policy(settings: Settings) -> OutboundPolicy:
    """Where webhooks may go: the public internet, unless the operator allows private networks."""
    return OutboundPolicy(allow_private=settings.webhook_allow_private_networks)


def check_target(url: str, policy: OutboundPolicy) -> None:
    """Refuse, when an endpoint is created, a URL the sender would never call: malformed,
    with control characters, or resolving to an address the policy forbids."""
    try:
        policy.check(url)
    except MalformedURL as exc:
        raise Problem(422, "validation_error", "Invalid webhook URL", f"{url!r}: {exc}") from exc
    except TargetRefused as exc:
        raise Problem(
            422, "webhook_url_not_allowed", "Webhook URL not allowed", f"{url!r}: {exc}"
        ) from exc


def enqueue(session: Session, job: Job, job_json: dict[str, Any]) -> None:
    """Create one pending delivery per endpoint of the job's project that wants this event."""
    event = f"job.{job.status}"
    if event not in EVENTS:
        return
    endpoints = session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.project_id == job.project_id, WebhookEndpoint.deleted_at.is_(None)
        )
    )
    already = set(
        session.scalars(
            select(WebhookDelivery.endpoint_id).where(
                WebhookDelivery.job_id == job.id, WebhookDelivery.event == event
            )
        )
    )
    timestamp = utcnow().isoformat() + "Z"
    for endpoint in endpoints:
        if event in endpoint.events and endpoint.id not in already:
            session.add(
                WebhookDelivery(
                    id=new_id("delivery"),
                    endpoint_id=endpoint.id,
                    job_id=job.id,
                    event=event,
                    payload={"type": event, "timestamp": timestamp, "data": job_json},
                )
            )
