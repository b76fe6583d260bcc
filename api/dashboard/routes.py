"""``/ui`` pages and their static files.

Every page is a shell rendered from templates (forms built from the job spec's own fields and
defaults, so they cannot drift from what the API accepts); nothing in it depends on who
asks, which is why these routes need no key: an id in the path only reaches the script,
and the script's ``/v1`` calls answer 404 for another project's objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, get_args

from fastapi import APIRouter, FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from jobspec import (
    CriterionName,
    FineTune,
    PruneFilters,
    PruneWeights,
    QuantizeMixed,
    ShareWeights,
    Spec,
)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(prefix="/ui", include_in_schema=False)

PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-src 'self'; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
"""Scripts only from this server; the report's inline styles are allowed in its frame."""


def _step_field(step: Any, field: str, label: str, number: str) -> dict[str, Any]:
    info = step.model_fields[field]
    return {
        "type": step.model_fields["type"].default,
        "field": field,
        "label": label,
        "default": info.default,
        "number": number,
        "description": info.description or "",
    }


STEP_FIELDS = [
    _step_field(PruneFilters, "ratio", "Prune filters: fraction removed", "float"),
    _step_field(PruneWeights, "sparsity", "Prune weights: fraction zeroed", "float"),
    _step_field(ShareWeights, "clusters", "Share weights: clusters per layer", "int"),
    _step_field(QuantizeMixed, "average_bits", "Mixed precision: average bits", "float"),
    _step_field(FineTune, "epochs", "Fine-tune: epochs", "int"),
]
"""The steps the form offers, in the order they run, each with its strength setting."""

JobId = Annotated[str, PathParam(pattern=r"^job_[A-Za-z0-9]{1,64}$")]


def _page(request: Request, name: str, **context: Any) -> HTMLResponse:
    response = templates.TemplateResponse(request, name, {"page": name, **context})
    response.headers.update(PAGE_HEADERS)
    return response


@router.get("")
def home() -> RedirectResponse:
    return RedirectResponse("/ui/jobs", status_code=307)


@router.get("/signin", response_class=HTMLResponse)
def signin(request: Request) -> HTMLResponse:
    return _page(request, "signin.html")


@router.get("/jobs", response_class=HTMLResponse)
def jobs(request: Request) -> HTMLResponse:
    return _page(request, "jobs.html")


@router.get("/jobs/{job_id}", response_class=HTMLResponse)
def job(request: Request, job_id: JobId) -> HTMLResponse:
    return _page(request, "job.html", job_id=job_id)


@router.get("/new", response_class=HTMLResponse)
def new(request: Request) -> HTMLResponse:
    return _page(
        request, "new.html", steps=STEP_FIELDS, criteria=get_args(CriterionName),
        default_criterion=Spec.model_fields["criterion"].default,
    )  # fmt: skip


def mount(app: FastAPI) -> None:
    """Add the pages and their static files to ``app``."""
    app.include_router(router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
