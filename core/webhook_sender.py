"""Send due webhook deliveries: concurrently, within bounds, each claimed on its own.

The outbox (``core.webhook_delivery``) says what is due; any number of senders (the embedded
server's loop, the housekeeping worker, two of them at once) read it. Each delivery is
*claimed* by itself, with an atomic update that moves its ``next_attempt_at`` past the longest
one attempt can take, so a claim never expires while its attempt is running and a delivery is
never in flight twice. The attempt is recorded only if the delivery's attempt count is still
the one the claim saw (a fence), so a late sender cannot record, or send, it twice.

Attempts run on a bounded thread pool, at most ``webhook_per_endpoint_concurrency`` per endpoint,
so one slow, hanging or huge endpoint holds at most its own slots and never delays deliveries
to the others. Each attempt has an overall deadline, reads at most
``webhook_max_response_bytes`` of the answer, connects only to the address its URL resolved to
(``core.outbound``), and any error it meets (a refused address, a malformed stored URL, a
reset) is recorded as that delivery's failed attempt: it never ends a round for the others.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from core.outbound import OutboundPolicy, TargetRefused, check_url, vetted_client
from core.settings import Settings
from core.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from core.webhook_delivery import sign, webhook_policy

log = logging.getLogger("core.webhook_sender")
USER_AGENT = "xai-compress-webhooks/1"
CLAIM_MARGIN_SECONDS = 30.0


def claim_seconds(settings: Settings) -> float:
    """How long a claim lasts: longer than one attempt can take (connecting, sending, the
    answer's head and its last body read are each bounded by the timeout), plus a margin for
    name resolution and the database."""
    return 4 * settings.webhook_timeout_seconds + CLAIM_MARGIN_SECONDS


@dataclass(frozen=True)
class _Claimed:
    delivery_id: str
    attempt: int  # the number this attempt will have
    url: str
    secret: str
    payload: dict[str, Any]


class WebhookSender:
    """Attempts due deliveries on a bounded pool; ``tick`` starts what is due and returns."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        settings: Settings,
        policy: OutboundPolicy | None = None,
        verify: Any = True,
    ) -> None:
        self.factory, self.settings = factory, settings
        self.policy = policy or webhook_policy(settings)
        self.verify = verify  # TLS verification: True, or a CA bundle / SSLContext (tests)
        self.pool = ThreadPoolExecutor(settings.webhook_concurrency, "webhook-attempt")
        self.lock = threading.Lock()
        self.idle = threading.Condition(self.lock)
        self.in_flight: dict[str, str] = {}  # delivery id -> endpoint id
        self.closing = threading.Event()

    def tick(self) -> int:
        """Start an attempt for each due delivery not already in flight, within the bounds;
        return how many were started. Never waits for an attempt."""
        if self.closing.is_set():
            return 0
        with self.lock:
            free = self.settings.webhook_concurrency - len(self.in_flight)
            busy = dict.fromkeys(self.in_flight.values(), 0)
            for endpoint_id in self.in_flight.values():
                busy[endpoint_id] += 1
        if free <= 0:
            return 0
        per_endpoint = self.settings.webhook_per_endpoint_concurrency
        started = 0
        for delivery_id, endpoint_id in self._due(free + len(busy) * per_endpoint):
            if started >= free:
                break
            with self.lock:
                if delivery_id in self.in_flight or busy.get(endpoint_id, 0) >= per_endpoint:
                    continue
                self.in_flight[delivery_id] = endpoint_id
            busy[endpoint_id] = busy.get(endpoint_id, 0) + 1
            try:
                self.pool.submit(self._run, delivery_id)
            except RuntimeError:  # closed meanwhile: the delivery stays due for the next sender
                with self.idle:
                    self.in_flight.pop(delivery_id, None)
                    self.idle.notify_all()
                break
            started += 1
        return started

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no attempt is in flight; False if ``timeout`` passed first."""
        with self.idle:
            return self.idle.wait_for(lambda: not self.in_flight, timeout)

    def run_until_idle(self, budget_seconds: float) -> int:
        """Send everything due now, filling slots as attempts finish, starting new attempts
        for at most ``budget_seconds``; return how many were started."""
        deadline = time.monotonic() + budget_seconds
        started = 0
        while time.monotonic() < deadline:
            started += self.tick()
            with self.idle:
                self.idle.wait(0.05)
                if self.in_flight:
                    continue
            if not self._due(1):
                break
        self.wait_idle()
        return started

    def close(self) -> None:
        """Start nothing new; wait for the attempts in flight (each has a deadline)."""
        self.closing.set()
        self.pool.shutdown(wait=True)

    def _due(self, limit: int) -> list[tuple[str, str]]:
        """Due deliveries, oldest first, at most ``per_endpoint`` of any one endpoint (so an
        endpoint with a backlog cannot fill the batch)."""
        ranked = (
            select(
                WebhookDelivery.id,
                WebhookDelivery.endpoint_id,
                WebhookDelivery.next_attempt_at,
                func.row_number()
                .over(
                    partition_by=WebhookDelivery.endpoint_id,
                    order_by=WebhookDelivery.next_attempt_at,
                )
                .label("rank"),
            )
            .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= utcnow())
            .subquery()
        )
        statement = (
            select(ranked.c.id, ranked.c.endpoint_id)
            .where(ranked.c.rank <= self.settings.webhook_per_endpoint_concurrency)
            .order_by(ranked.c.next_attempt_at)
            .limit(limit)
        )
        with self.factory() as session:
            return [(row.id, row.endpoint_id) for row in session.execute(statement)]

    def _run(self, delivery_id: str) -> None:
        try:
            claimed = self._claim(delivery_id)
            if claimed is not None:
                self._record(claimed, *self._attempt(claimed))
        except Exception:  # a database error: the claim expires and the delivery is retried
            log.exception("webhook delivery %s: attempt not recorded", delivery_id)
        finally:
            with self.idle:
                self.in_flight.pop(delivery_id, None)
                self.idle.notify_all()
        if not self.closing.is_set():
            self._refill()

    def _refill(self) -> None:
        """A slot came free: start what is due now rather than at the next tick."""
        try:
            self.tick()
        except Exception:
            log.exception("webhook sender: starting due deliveries failed")

    def _claim(self, delivery_id: str) -> _Claimed | None:
        """Take this delivery for one attempt, or None if another sender has it (or it is
        no longer due). One atomic update decides."""
        now = utcnow()
        with self.factory() as session, session.begin():
            delivery = session.get(WebhookDelivery, delivery_id)
            if delivery is None or delivery.status != "pending":
                return None
            seen = delivery.attempts
            taken = session.execute(
                update(WebhookDelivery)
                .where(
                    WebhookDelivery.id == delivery_id,
                    WebhookDelivery.status == "pending",
                    WebhookDelivery.attempts == seen,
                    WebhookDelivery.next_attempt_at <= now,
                )
                .values(next_attempt_at=now + timedelta(seconds=claim_seconds(self.settings)))
                .execution_options(synchronize_session=False)
            ).rowcount
            if taken != 1:
                return None
            endpoint = session.get(WebhookEndpoint, delivery.endpoint_id)
            if endpoint is None or endpoint.deleted_at is not None:
                # the endpoint went away after the event: nothing to send it to
                delivery.status, delivery.next_attempt_at = "failed", None
                return None
            return _Claimed(delivery_id, seen + 1, endpoint.url, endpoint.secret, delivery.payload)

    def _attempt(self, claimed: _Claimed) -> tuple[int | None, str | None, float]:
        """POST once; (status code, error or None, milliseconds). Never raises."""
        body = json.dumps(claimed.payload, separators=(",", ":")).encode()
        timestamp = int(time.time())
        headers = {
            "content-type": "application/json",
            "webhook-id": claimed.delivery_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(claimed.secret, claimed.delivery_id, timestamp, body),
            "user-agent": USER_AGENT,
        }
        timeout = self.settings.webhook_timeout_seconds
        start = time.monotonic()
        status_code, error = None, None
        try:
            check_url(claimed.url)  # rows stored before the URL rules existed
            with (
                vetted_client(self.policy, timeout, self.verify) as http,
                http.stream("POST", claimed.url, content=body, headers=headers) as response,
            ):
                status_code = response.status_code
                self._read_some(response, start + timeout)
            if not 200 <= status_code < 300:
                error = f"HTTP {status_code}"
        except TargetRefused as exc:
            error = f"refused: {exc}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
        except Exception as exc:  # anything else is this delivery's failure, not the round's
            log.warning("webhook delivery %s failed", claimed.delivery_id, exc_info=True)
            error = f"{type(exc).__name__}: {exc}"[:1000]
        return status_code, error, (time.monotonic() - start) * 1000

    def _read_some(self, response: httpx.Response, deadline: float) -> None:
        """Read at most ``webhook_max_response_bytes`` of the answer's body, until the deadline;
        the status code already decided the outcome, and the rest is never read (closing the
        client drops the connection)."""
        limit = self.settings.webhook_max_response_bytes
        read = 0
        for chunk in response.iter_raw(chunk_size=16384):
            read += len(chunk)
            if read >= limit or time.monotonic() > deadline:
                return

    def _record(self, claimed: _Claimed, status_code: int | None, error: str | None,
                duration_ms: float) -> None:  # fmt: skip
        with self.factory() as session, session.begin():
            delivery = session.get(WebhookDelivery, claimed.delivery_id, with_for_update=True)
            if delivery is None or delivery.attempts != claimed.attempt - 1:
                log.warning("webhook delivery %s: attempt fenced off", claimed.delivery_id)
                return
            delivery.attempts = claimed.attempt
            session.add(
                WebhookAttempt(
                    delivery_id=claimed.delivery_id, attempt=claimed.attempt,
                    status_code=status_code, error=error, duration_ms=round(duration_ms, 1),
                )
            )  # fmt: skip
            if error is None:
                delivery.status, delivery.next_attempt_at = "succeeded", None
            elif delivery.attempts >= self.settings.webhook_max_attempts:
                delivery.status, delivery.next_attempt_at = "failed", None
            else:
                wait = self.settings.webhook_retry_base_seconds * 2 ** (delivery.attempts - 1)
                delivery.next_attempt_at = utcnow() + timedelta(seconds=wait)


def deliver_due(
    factory: sessionmaker[Session],
    settings: Settings,
    policy: OutboundPolicy | None = None,
    budget_seconds: float = 60.0,
) -> int:
    """One-shot: send what is due with a fresh sender (a periodic task in its own process);
    return how many attempts were made."""
    sender = WebhookSender(factory, settings, policy)
    try:
        return sender.run_until_idle(budget_seconds)
    finally:
        sender.close()
