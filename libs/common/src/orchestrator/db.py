"""Database engines and column types; engines are built on demand, never at import."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from orchestrator import commit_hooks, outcomes

#: JSON everywhere, JSONB on PostgreSQL so arguments can be indexed and searched later.
JsonType = sa.JSON().with_variant(JSONB(), "postgresql")
#: SQLite has no sequences for BIGINT primary keys; INTEGER PRIMARY KEY is its rowid.
BigIdType = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def async_url(url: str) -> str:
    """Map a user-facing URL (``postgresql://``, ``sqlite:///``) to its asyncio driver."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite://"):
        return "sqlite+aiosqlite://" + url.split("://", 1)[1]
    return url


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """Build the async engine for ``url``; SQLite gets WAL and immediate write transactions."""
    full = async_url(url)
    if full.startswith("sqlite"):
        engine = create_async_engine(
            full, connect_args={"timeout": 30}, json_deserializer=outcomes.load_json
        )
        _configure_sqlite(engine)
        commit_hooks.install(engine.sync_engine)
        return engine
    # No pre-ping: it costs a BEGIN/ROLLBACK round trip on every checkout. A dead connection fails
    # its statement once and is discarded; every caller treats store errors as transient. No TLS
    # negotiation unless the URL asks for it (asyncpg's "prefer" tries TLS on every connect).
    connect_args = {} if "ssl" in full else {"ssl": False}
    engine = create_async_engine(
        full,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_recycle=1800,
        connect_args=connect_args,
        # A stored value Python cannot load must not make its row (and its page) unreadable.
        json_deserializer=outcomes.load_json,
    )
    commit_hooks.install(engine.sync_engine)
    return engine


def _configure_sqlite(engine: AsyncEngine) -> None:
    sync_engine = engine.sync_engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take control of transactions so every one starts with BEGIN IMMEDIATE: in WAL mode a
        # read transaction that later writes gets SQLITE_BUSY despite busy_timeout.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


async def fetch_autocommit(engine: AsyncEngine, statement: str, *args: Any) -> list[Any]:
    """One PostgreSQL statement on asyncpg directly, in no transaction (it commits by itself):
    one round trip, and asyncpg prepares the statement once per connection and reuses it."""
    async with engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver = raw.driver_connection
        try:
            # SQLAlchemy began no transaction on this connection, so it has none to end either.
            return list(await driver.fetch(statement, *args))  # type: ignore[union-attr]
        except Exception as exc:
            if not _connection_lost(exc, driver):
                raise
            # Off SQLAlchemy's path nothing tells the pool the connection is dead, and callers
            # (the API's 503, the workers' retries) know a lost store by SQLAlchemy's error.
            await conn.invalidate(exc)
            raise sa.exc.OperationalError(statement, None, exc) from exc


def _connection_lost(exc: Exception, driver: Any) -> bool:
    """Whether asyncpg's ``exc`` means the server or the connection is gone (not a bad query)."""
    import asyncpg

    gone = (OSError, asyncpg.PostgresConnectionError, asyncpg.OperatorInterventionError)
    if isinstance(exc, gone):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and bool(driver.is_closed())


def one_of(
    conn: AsyncConnection, column: sa.ColumnElement[Any], values: Sequence[Any]
) -> sa.ColumnElement[bool]:
    """``column IN values``; on PostgreSQL ``= ANY(array)``, one parameter whatever the number of
    values, so the statement text stays the same and the driver's prepared statement is reused
    (an IN list is a new statement to prepare, one more round trip, for each new length)."""
    if is_postgres(conn):
        array = sa.bindparam(
            "values", list(values), type_=postgresql.ARRAY(column.type), unique=True
        )
        return column == sa.any_(array)
    return column.in_(list(values))


def is_postgres(conn: AsyncConnection | AsyncEngine) -> bool:
    return conn.dialect.name == "postgresql"


async def db_now(conn: AsyncConnection) -> datetime:
    """The database's clock: PostgreSQL's transaction time, or this host's clock for SQLite."""
    if is_postgres(conn):
        value = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
        assert isinstance(value, datetime)
        return value.astimezone(UTC)
    return datetime.now(UTC)


def insert_for(conn: AsyncConnection) -> Any:
    """The dialect's INSERT construct, which has ``on_conflict_do_update`` on both stores."""
    return postgresql.insert if is_postgres(conn) else sqlite.insert
