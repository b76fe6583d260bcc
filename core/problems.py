"""Refusals the service gives, each with a stable ``code`` that programs branch on.

A ``Problem`` is raised by the service core (a key that is unknown, a webhook URL that is not
allowed, an object another project owns) as much as by the HTTP layer; it carries the HTTP
status it maps to, so the API renders it as RFC 9457 problem+json without a translation
table, and the core stays free of any web framework.
"""

from __future__ import annotations

from typing import Any


class Problem(Exception):
    """Raise anywhere in a request to answer with a problem+json body."""

    def __init__(self, status: int, code: str, title: str, detail: str = "", **extra: Any) -> None:
        super().__init__(detail or title)
        self.status, self.code, self.title, self.detail, self.extra = (
            status, code, title, detail, extra,
        )  # fmt: skip


def not_found(kind: str, object_id: str) -> Problem:
    return Problem(404, "not_found", f"{kind} not found", f"No {kind} with id {object_id!r}.")
