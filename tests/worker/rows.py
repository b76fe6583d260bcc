"""Rows the worker tests start from: project prj_1 with model mdl_1 and dataset ds_1."""

from __future__ import annotations

from sqlalchemy.orm import Session

from core.tables import DatasetRecord, Job, ModelRecord, Project

UPLOAD = {"name": "u", "filename": "u", "storage_key": "k", "size_bytes": 1, "sha256": "0"}


def add_project_with_uploads(session: Session) -> None:
    """prj_1 with a model and a dataset (flushed, so a job may point at them)."""
    session.add(Project(id="prj_1", name="p"))
    session.flush()
    session.add(ModelRecord(id="mdl_1", project_id="prj_1", **UPLOAD))
    session.add(DatasetRecord(id="ds_1", project_id="prj_1", **UPLOAD))
    session.flush()


def job_1(**columns: object) -> Job:
    """job_1 of prj_1 on mdl_1 and ds_1, with an empty spec unless ``columns`` say more."""
    return Job(id="job_1", project_id="prj_1", model_id="mdl_1", dataset_id="ds_1",
               **{"spec": {}, **columns})  # fmt: skip
