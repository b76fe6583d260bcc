"""Fixtures shared by the service tests: a real Postgres database migrated with Alembic,
a real Redis, and files a user would upload."""

from __future__ import annotations

import io
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import psycopg
import pytest
from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from tests.s3_faults import FaultyS3, MotoServer

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
REDIS = os.environ.get("TEST_REDIS", "redis://127.0.0.1:6379")


def migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", database_url)
    command.upgrade(config, "head")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh database for this test session, built by ``alembic upgrade head``."""
    name = f"xai_test_{secrets.token_hex(4)}"
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+psycopg://{POSTGRES.removeprefix('postgresql://')}/{name}"
    migrate(url)
    yield url
    with psycopg.connect(f"{POSTGRES}/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


TABLES = "artifacts, job_events, idempotency_keys, jobs, models, datasets, api_keys, projects"


@pytest.fixture
def clean_postgres(postgres_url: str) -> str:
    plain = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {TABLES} CASCADE")
    return postgres_url


@pytest.fixture(scope="session")
def digits_npz() -> bytes:
    """sklearn's digits as an upload: x (N, 1, 8, 8) float32 in [0, 1], y int64."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    buffer = io.BytesIO()
    np.savez(buffer, x=(bunch.images[:, None] / 16.0).astype(np.float32), y=bunch.target)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def digits_model_pt2(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """A small CNN trained on digits for a few seconds, exported with torch.export."""
    import torch
    from sklearn.datasets import load_digits

    from compression import zoo
    from compression.data import Dataset
    from compression.io import export_pt2
    from compression.training import fit

    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    data = Dataset(x, torch.tensor(bunch.target), tuple(str(i) for i in range(10)))
    torch.manual_seed(0)
    model, _ = zoo.build("small_cnn")
    fit(model, data, epochs=4)
    path = tmp_path_factory.mktemp("model") / "digits.pt2"
    export_pt2(model, x[:2], path)
    return path.read_bytes()


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoServer]:
    """A real S3 server (moto's, over HTTP on loopback), empty."""
    from tests.s3_faults import S3_ENV, MotoServer  # moto loads only for the tests using it

    for name, value in S3_ENV.items():
        monkeypatch.setenv(name, value)
    server = MotoServer()
    yield server
    server.stop()


@pytest.fixture
def faulty_s3(s3_server: MotoServer) -> Iterator[FaultyS3]:
    """An HTTP front for ``s3_server`` that breaks the requests a test chooses."""
    from tests.s3_faults import FaultyS3

    front = FaultyS3(s3_server.url)
    yield front
    front.close()
