"""``client.jobs`` and the ``Job`` it returns: submit, follow, cancel, download."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from os import PathLike
from pathlib import Path
from typing import Any

from xai_compress_client.downloads import save_artifact
from xai_compress_client.errors import JobCancelled, JobFailed, NotFoundError
from xai_compress_client.objects import Artifact, ErrorInfo, Event, Upload, from_api
from xai_compress_client.polling import poll_until
from xai_compress_client.progress import progress_bar
from xai_compress_client.transport import Transport

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(kw_only=True)
class Job:
    """A compression job as last read from the API; ``refresh()`` reads it again in place."""

    id: str
    status: str  # queued | running | cancelling | succeeded | failed | cancelled
    stage: str | None
    progress: float
    eta_seconds: float | None
    error: ErrorInfo | None
    metrics: dict[str, Any] | None
    model_id: str
    dataset_id: str
    eval_dataset_id: str | None
    spec: dict[str, Any]
    metadata: dict[str, Any]
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    _transport: Transport = field(repr=False, compare=False)

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    @property
    def _path(self) -> str:
        return f"/v1/jobs/{self.id}"

    def refresh(self) -> Job:
        return self._replace_with(self._transport.request("GET", self._path).json())

    def cancel(self) -> Job:
        """Idempotent: a queued job is cancelled at once, a running one soon after."""
        return self._replace_with(self._transport.request("POST", f"{self._path}/cancel").json())

    def wait(
        self, timeout: float | None = None, progress: bool = True, poll_interval: float = 1.0
    ) -> Job:
        """Poll until the job has finished and return it, or raise JobFailed / JobCancelled.

        WaitTimeout after ``timeout`` seconds leaves the job running. ``progress`` shows a bar
        on a terminal when tqdm is installed.
        """
        with progress_bar(progress) as show:
            poll_until(
                self.refresh,
                lambda job: job.done,
                timeout=timeout,
                interval=poll_interval,
                what=f"job {self.id}",
                on_update=lambda job: show(job.stage or job.status, job.progress, job.eta_seconds),
            )
        if self.status == "failed":
            raise JobFailed(self)
        if self.status == "cancelled":
            raise JobCancelled(self)
        return self

    def events(
        self, after: int = 0, follow: bool = False, poll_interval: float = 1.0
    ) -> Iterator[Event]:
        """The job's feed after event ``after``, oldest first; ``follow`` waits for the end."""
        cursor = after
        while True:
            # The status is read before the page: once it is terminal, the final status
            # event (written in the same transaction) is already in the pages read next.
            finished = not follow or self.refresh().done
            for item in self._transport.paginate(f"{self._path}/events", {"after": cursor}):
                event = from_api(Event, item)
                cursor = event.seq
                yield event
            if finished:
                return
            time.sleep(poll_interval)

    def artifacts(self) -> list[Artifact]:
        listing = self._transport.request("GET", f"{self._path}/artifacts").json()
        return [from_api(Artifact, item) for item in listing]

    def download(
        self, directory: str | PathLike[str], names: Iterable[str] | None = None
    ) -> list[Path]:
        """Save the artifacts (all, or ``names``) into ``directory``, each verified by sha256."""
        listing = self.artifacts()
        if names is not None:
            wanted = set(names)
            if missing := wanted - {artifact.name for artifact in listing}:
                raise NotFoundError(
                    f"job {self.id} has no artifact {', '.join(sorted(missing))}", code="not_found"
                )
            listing = [artifact for artifact in listing if artifact.name in wanted]
        target = Path(directory)
        target.mkdir(parents=True, exist_ok=True)
        return [save_artifact(self._transport, artifact, target) for artifact in listing]

    def _replace_with(self, body: Mapping[str, Any]) -> Job:
        vars(self).update(vars(from_api(Job, body, _transport=self._transport)))
        return self


class Jobs:
    def __init__(self, transport: Transport) -> None:
        self._transport = transport

    def create(
        self,
        model: str | Upload,
        dataset: str | Upload,
        *,
        steps: Sequence[Mapping[str, Any]],
        criterion: str | None = None,
        eval_dataset: str | Upload | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        **spec_fields: Any,
    ) -> Job:
        """Submit a job; ``spec_fields`` are the rest of the engine's Spec (attribution, ...).

        The Idempotency-Key (a fresh uuid4 unless given) is sent on every retry of this call,
        so a retry after a lost response returns the job the first attempt created.
        """
        optional = {
            "criterion": criterion,
            "eval_dataset_id": _id(eval_dataset) if eval_dataset is not None else None,
            "metadata": metadata,
        }
        body = {
            "model_id": _id(model),
            "dataset_id": _id(dataset),
            "steps": [dict(step) for step in steps],
            **{name: value for name, value in optional.items() if value is not None},
            **spec_fields,
        }
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        response = self._transport.request("POST", "/v1/jobs", json=body, headers=headers)
        return self._job(response.json())

    def get(self, job_id: str) -> Job:
        return self._job(self._transport.request("GET", f"/v1/jobs/{job_id}").json())

    def list(
        self, *, status: str | None = None, model_id: str | None = None, limit: int = 20
    ) -> Iterator[Job]:
        """Every matching job, newest first; ``limit`` is the page size."""
        params = {"status": status, "model_id": model_id, "limit": limit}
        for item in self._transport.paginate("/v1/jobs", params):
            yield self._job(item)

    def _job(self, body: Mapping[str, Any]) -> Job:
        return from_api(Job, body, _transport=self._transport)


def _id(target: str | Upload) -> str:
    return target if isinstance(target, str) else target.id
