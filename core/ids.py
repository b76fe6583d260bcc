"""Prefixed random ids (``mdl_``, ``ds_``, ``job_`` ...): readable in logs, unguessable."""

from __future__ import annotations

import secrets

PREFIXES = {
    "project": "prj",
    "api_key": "key",
    "model": "mdl",
    "dataset": "ds",
    "job": "job",
    "artifact": "art",
    "webhook": "whe",
    "delivery": "msg",
}


def new_id(kind: str) -> str:
    return f"{PREFIXES[kind]}_{secrets.token_urlsafe(12).replace('-', 'x').replace('_', 'y')}"
