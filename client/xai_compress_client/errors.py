"""Every error this package raises, so callers can catch one base class or one precise case.

API errors are built from the server's RFC 9457 problem+json body: ``code`` is the stable,
machine-readable reason; ``detail`` is written for a person.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    from xai_compress_client.jobs import Job
    from xai_compress_client.objects import Upload


class XaiCompressError(Exception):
    """Base class; API errors fill in the problem fields, client-side errors may leave them."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        detail: str | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.body = body


class AuthenticationError(XaiCompressError):
    """401: the API key is missing, unknown or revoked."""


class NotFoundError(XaiCompressError):
    """404: no such object in this key's project (other projects' objects look absent too)."""


class ConflictError(XaiCompressError):
    """409: e.g. ``idempotency_key_reused``, ``model_in_use``, ``model_invalid``."""


class ValidationError(XaiCompressError):
    """422: the request body or parameters are invalid; ``errors`` says where."""

    @property
    def errors(self) -> list[dict[str, Any]]:
        return self.body.get("errors", []) if isinstance(self.body, dict) else []


class PayloadTooLargeError(XaiCompressError):
    """413: the upload is above the server's size limit."""


class RateLimitError(XaiCompressError):
    """429 that persisted through every retry."""


class ServerError(XaiCompressError):
    """5xx that persisted through every retry (or one that is never retried)."""


class TransportError(XaiCompressError):
    """The server could not be reached, or the connection broke, after every retry."""


class UploadInvalid(XaiCompressError):
    """An uploaded model or dataset failed the server's validation; ``code`` says why."""

    def __init__(self, record: Upload) -> None:
        code, reason = (record.error.code, record.error.message) if record.error else (None, "")
        super().__init__(f"{record.id} is invalid: {code}: {reason}", code=code, detail=reason)
        self.record = record


class JobFailed(XaiCompressError):
    """The job ended ``failed``; ``code`` is the engine's error code (e.g. ``invalid_spec``)."""

    def __init__(self, job: Job) -> None:
        code, reason = (job.error.code, job.error.message) if job.error else (None, "")
        super().__init__(f"job {job.id} failed: {code}: {reason}", code=code, detail=reason)
        self.job = job


class JobCancelled(XaiCompressError):
    """The job ended ``cancelled``."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.id} was cancelled")
        self.job = job


class WaitTimeout(XaiCompressError):
    """A wait ran out of time; the object itself is unaffected and still progressing."""


class IntegrityError(XaiCompressError):
    """A downloaded file's size or sha256 differs from the artifact listing; it was removed."""


class WebhookVerificationError(XaiCompressError):
    """A webhook request is not authentic or not fresh; answer it with 400 and ignore it."""


_BY_STATUS: dict[int, type[XaiCompressError]] = {
    401: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: ValidationError,
    429: RateLimitError,
}


def error_from_response(response: httpx.Response) -> XaiCompressError:
    """The typed error for an error response, from its problem+json body when it has one."""
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    problem = body if isinstance(body, dict) else {}
    status = response.status_code
    code, title = problem.get("code"), problem.get("title")
    detail = problem.get("detail") or title or response.reason_phrase
    kind = ServerError if status >= 500 else _BY_STATUS.get(status, XaiCompressError)
    message = f"{code or response.reason_phrase}: {detail} (HTTP {status})"
    return kind(message, status=status, code=code, title=title, detail=detail, body=body)
