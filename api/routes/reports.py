"""``GET /v1/jobs/{id}/report``: the job's report.html, served as a page.

The worker renders the report (it has torch and the models); the API only streams the
stored bytes, under a Content-Security-Policy that lets the page load nothing but its own
embedded images and styles, whatever a model or layer name put into it.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy import select

from api.deps import ProjectDep, StorageDep
from api.routes.lookup import owned
from core.job_state import TERMINAL
from core.problems import Problem, not_found
from core.tables import Artifact, Job

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])
REPORT = "report.html"
REPORT_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, no-cache",
}


@router.get(
    "/{job_id}/report",
    operation_id="getJobReport",
    summary="The job's report as one self-contained HTML page",
    description="Accuracy, sizes, MACs, latency, the per-layer table, input relevance maps "
    "before and after compression and, for sweeps, the accuracy-vs-size curve. Written when "
    "the job succeeds (409 `report_not_ready` before that; 404 for a job that ended "
    "without one). Also listed among the job's artifacts as `report.html`.",
    response_class=Response,
    responses={200: {"content": {"text/html": {}}}},
)
def get_report(
    job_id: str, request: Request, project_id: ProjectDep, storage: StorageDep
) -> Response:
    with request.app.state.sessionmaker() as session:
        job = owned(session, Job, job_id, project_id, "job")
        status = job.status
        artifact = session.scalar(
            select(Artifact).where(Artifact.job_id == job_id, Artifact.name == REPORT)
        )
    if artifact is None:
        if status not in TERMINAL:
            raise Problem(
                409, "report_not_ready", "The report is not ready yet",
                f"Job {job_id} is {status}; its report is written when it succeeds.",
            )  # fmt: skip
        raise not_found("report", job_id)
    return StreamingResponse(
        storage.iter_chunks(artifact.storage_key),
        media_type="text/html; charset=utf-8",
        headers={**REPORT_HEADERS, "Content-Length": str(artifact.size_bytes)},
    )
