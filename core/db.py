"""Database engine and sessions. The Postgres (or SQLite) row is the source of truth."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def make_engine(settings: Settings, pre_ping: bool = True) -> Engine:
    """The engine for ``settings``' database. ``pre_ping=False`` leaves pinging a pooled
    connection to whoever checks it out (``core.db_guard``, which bounds the ping)."""
    url = settings.resolved_database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=SQLITE_POOL_SIZE,
            max_overflow=-1,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    # Bounded waits: a database that is down or hung fails a request in seconds (the API
    # answers 503) instead of holding it; workers retry.
    statement_ms = round(settings.database_statement_timeout_seconds * 1000)
    connect_args = {
        "connect_timeout": max(1, round(settings.database_connect_timeout_seconds)),
        "options": f"-c statement_timeout={statement_ms}",
    }
    return create_engine(
        url,
        pool_pre_ping=pre_ping,
        pool_size=10,
        max_overflow=20,
        pool_timeout=settings.database_connect_timeout_seconds,
        connect_args=connect_args if url.startswith("postgresql") else {},
    )


SQLITE_POOL_SIZE = 20
"""Connections kept open; more are opened when needed (no overflow limit), because a thread
waiting for a pooled connection while the holders wait for a thread stalls the server, and a
SQLite connection costs only a file handle. A request that writes waits for the write lock."""
READ_ONLY = "xai_read_only"
"""Execution option of read sessions: on SQLite they begin DEFERRED (no write lock)."""


def _sqlite_pragmas(connection, _record) -> None:
    """WAL lets readers proceed while a writer works; FKs are off by default in SQLite.

    pysqlite's own transaction handling is switched off so that ``_sqlite_begin`` decides how
    transactions start.
    """
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_begin(connection) -> None:
    """A transaction that may write takes the write lock at BEGIN (IMMEDIATE): writers then
    queue for it instead of failing half-way through a read-then-write transaction, which
    SQLite cannot upgrade once another writer committed. A read session begins DEFERRED and
    never takes the lock: in WAL mode it reads its snapshot while a writer works."""
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN DEFERRED" if read_only else "BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that may write (on SQLite, each transaction holds the write lock)."""
    return sessionmaker(engine, expire_on_commit=False)


def make_read_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that only read: on SQLite they never wait for, nor hold, the write lock."""
    return sessionmaker(engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session


def upgrade_schema(settings: Settings) -> None:
    """Bring the database to the newest Alembic revision (idempotent)."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", settings.resolved_database_url)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command.upgrade(config, "head")
