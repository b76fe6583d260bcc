"""Webhook endpoints of a project, and the record of every delivery attempt."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select

from api.deps import ProjectDep, SessionDep
from api.routes.lookup import owned
from api.routes.pagination import MAX_LIMIT, page
from api.schemas import DeliveryOut, Page, WebhookCreate, WebhookOut, delivery_out, webhook_out
from core.ids import new_id
from core.tables import WebhookAttempt, WebhookDelivery, WebhookEndpoint, utcnow
from core.webhook_delivery import check_target, new_secret

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])


def _endpoint(session: Any, project_id: str, endpoint_id: str) -> WebhookEndpoint:
    return owned(session, WebhookEndpoint, endpoint_id, project_id, "webhook")


@router.post(
    "", status_code=201, response_model=WebhookOut, operation_id="createWebhook",
    description="Job terminal states are POSTed to `url`, signed the Standard Webhooks way "
    "(`webhook-id`, `webhook-timestamp`, `webhook-signature`); the secret is shown only here. "
    "The URL must be http(s) without credentials or control characters, and its host must "
    "resolve to public addresses (422 `webhook_url_not_allowed`) unless the operator allows "
    "private networks.",
)  # fmt: skip
def create_webhook(
    body: WebhookCreate, request: Request, session: SessionDep, project_id: ProjectDep
) -> Any:
    check_target(body.url, request.app.state.outbound_policy)
    endpoint = WebhookEndpoint(
        id=new_id("webhook"), project_id=project_id, url=body.url, secret=new_secret(),
        events=list(dict.fromkeys(body.events)), description=body.description,
    )  # fmt: skip
    session.add(endpoint)
    session.flush()
    return webhook_out(endpoint, show_secret=True)


@router.get("", response_model=Page[WebhookOut], operation_id="listWebhooks")
def list_webhooks(
    session: SessionDep,
    project_id: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
) -> Any:
    statement = select(WebhookEndpoint).where(
        WebhookEndpoint.project_id == project_id, WebhookEndpoint.deleted_at.is_(None)
    )
    scope = WebhookEndpoint.project_id == project_id
    return page(session, statement, WebhookEndpoint, after, limit, webhook_out, scope)


@router.delete("/{webhook_id}", status_code=204, operation_id="deleteWebhook")
def delete_webhook(webhook_id: str, session: SessionDep, project_id: ProjectDep) -> Response:
    _endpoint(session, project_id, webhook_id).deleted_at = utcnow()
    return Response(status_code=204)


@router.get(
    "/{webhook_id}/deliveries", response_model=Page[DeliveryOut], operation_id="listDeliveries"
)
def list_deliveries(
    webhook_id: str,
    session: SessionDep,
    project_id: ProjectDep,
    after: str | None = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 20,
) -> Any:
    _endpoint(session, project_id, webhook_id)
    statement = select(WebhookDelivery).where(WebhookDelivery.endpoint_id == webhook_id)

    def render(delivery: WebhookDelivery) -> DeliveryOut:
        attempts = session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id == delivery.id)
            .order_by(WebhookAttempt.attempt)
        )
        return delivery_out(delivery, list(attempts))

    scope = WebhookDelivery.endpoint_id == webhook_id
    return page(session, statement, WebhookDelivery, after, limit, render, scope)
