"""Signed webhooks on job completion, the Standard Webhooks way.

Each delivery is POSTed with ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature:
v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`` keyed by the endpoint's secret. A
delivery row is created in the same transaction as the job's terminal status, so no event is
lost; a sender attempts due deliveries, records every attempt, and retries with exponential
backoff until a 2xx answer or the attempts run out.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import time
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.ids import new_id
from core.problems import Problem
from core.settings import Settings
from core.tables import Job, WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow

EVENTS = ("job.succeeded", "job.failed", "job.cancelled")
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def check_url(url: str, settings: Settings) -> None:
    """Only http(s); optionally nothing that resolves to an internal address (SSRF)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Problem(422, "validation_error", "Invalid webhook URL", "Use an http(s) URL.")
    if not settings.webhook_block_private_networks:
        return
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError as exc:
        raise Problem(422, "validation_error", "Webhook host does not resolve", str(exc)) from exc
    for address in addresses:
        ip = ipaddress.ip_address(address)
        if ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved:
            raise Problem(
                422, "webhook_url_not_allowed", "Webhook URL not allowed",
                f"{parts.hostname} resolves to an internal address ({address}).",
            )  # fmt: skip


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
    timestamp = utcnow().isoformat() + "Z"
    for endpoint in endpoints:
        if event in endpoint.events:
            session.add(
                WebhookDelivery(
                    id=new_id("delivery"),
                    endpoint_id=endpoint.id,
                    job_id=job.id,
                    event=event,
                    payload={"type": event, "timestamp": timestamp, "data": job_json},
                )
            )


def deliver_due(factory: sessionmaker[Session], settings: Settings, limit: int = 50) -> int:
    """Attempt every delivery that is due; return how many were attempted."""
    with factory() as session, session.begin():
        due = session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
            .order_by(WebhookDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for delivery in due:  # claim them: another sender skips until the attempt is recorded
            delivery.next_attempt_at = utcnow() + timedelta(
                seconds=settings.webhook_timeout_seconds * 3
            )
        claimed = [(d.id, d.endpoint_id) for d in due]
    with httpx.Client(timeout=settings.webhook_timeout_seconds, follow_redirects=False) as http:
        for delivery_id, endpoint_id in claimed:
            _attempt(factory, settings, http, delivery_id, endpoint_id)
    return len(claimed)


def _attempt(
    factory: sessionmaker[Session], settings: Settings, http: httpx.Client,
    delivery_id: str, endpoint_id: str,
) -> None:  # fmt: skip
    with factory() as session:
        endpoint = session.get(WebhookEndpoint, endpoint_id)
        delivery = session.get(WebhookDelivery, delivery_id)
        url, secret, payload = endpoint.url, endpoint.secret, delivery.payload
        deleted = endpoint.deleted_at is not None
    if deleted:  # the endpoint went away after the event: nothing to send it to
        with factory() as session, session.begin():
            delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
            delivery.status, delivery.next_attempt_at = "failed", None
        return
    body = json.dumps(payload, separators=(",", ":")).encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "webhook-id": delivery_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, delivery_id, timestamp, body),
        "user-agent": "xai-compress-webhooks/1",
    }
    status_code, error = None, None
    start = time.perf_counter()
    try:
        check_url(url, settings)
        response = http.post(url, content=body, headers=headers)
        status_code = response.status_code
        if not 200 <= status_code < 300:
            error = f"HTTP {status_code}"
    except Problem as exc:
        error = exc.detail or exc.title
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"
    duration = (time.perf_counter() - start) * 1000
    with factory() as session, session.begin():
        delivery = session.get(WebhookDelivery, delivery_id, with_for_update=True)
        delivery.attempts += 1
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id, attempt=delivery.attempts, status_code=status_code,
                error=error, duration_ms=round(duration, 1),
            )
        )  # fmt: skip
        if error is None:
            delivery.status, delivery.next_attempt_at = "succeeded", None
        elif delivery.attempts >= settings.webhook_max_attempts:
            delivery.status, delivery.next_attempt_at = "failed", None
        else:
            wait = settings.webhook_retry_base_seconds * 2 ** (delivery.attempts - 1)
            delivery.next_attempt_at = utcnow() + timedelta(seconds=wait)
