"""PostgreSQL access: one connection per process, reused across warm invocations."""

from __future__ import annotations

import dataclasses
import select as socket_select  # `select` is this module's query helper
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, LiteralString, TypeVar

import psycopg
from psycopg import sql
from psycopg.abc import Params
from psycopg.pq import TransactionStatus
from psycopg.rows import class_row, dict_row

from upgrader.infra.connection import resolve_conninfo, uses_startup_options
from upgrader.infra.errors import DatabaseUnavailable
from upgrader.infra.settings import Settings

Row = dict[str, Any]
T = TypeVar("T")
Query = LiteralString | sql.SQL | sql.Composed

# A connection unused for longer than this is probed before use.
IDLE_PROBE_SECONDS = 30.0

# Every timestamp is stored and read in UTC; no statement runs or waits on a lock for long. The
# Lambda timeouts in template.yaml are sized above these (tests/test_timeouts.py).
STATEMENT_TIMEOUT_MS = 15_000
LOCK_TIMEOUT_MS = 10_000
_SESSION_SETTINGS = {"timezone": "UTC", "statement_timeout": str(STATEMENT_TIMEOUT_MS),
                     "lock_timeout": str(LOCK_TIMEOUT_MS)}  # fmt: skip
_SESSION_OPTIONS = " ".join(f"-c {name}={value}" for name, value in _SESSION_SETTINGS.items())
# The same as statements, for connections that cannot carry startup options (RDS Proxy).
_SESSION_SET = "; ".join(f"SET {name} TO '{value}'" for name, value in _SESSION_SETTINGS.items())

__all__ = [
    "Database",
    "Row",
    "columns",
    "database_for",
    "one_row",
    "resolve_conninfo",
    "select",
    "select_one",
    "select_returned",
]


def _server_spoke(conn: psycopg.Connection[Row]) -> bool:
    """Whether the server sent something to a connection between our units of work: a terminated backend's
    FATAL message and end of stream, most likely (we LISTEN to nothing). A closed socket counts as spoken."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        return False  # inside a unit of work (a snapshot's): its own statements' answers, not ours to read
    try:
        readable, _, _ = socket_select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class Database:
    """Hands out a healthy connection and wraps units of work in transactions.

    Lambda runs one invocation at a time per process, but the local stack calls handlers from
    several threads, so each thread gets its own connection.
    """

    def __init__(self, conninfo: str | Callable[[], str], *, startup_options: bool = True) -> None:
        self._conninfo = conninfo
        self._startup_options = startup_options
        self._local = threading.local()

    def _connect(self) -> psycopg.Connection[Row]:
        info = self._conninfo() if callable(self._conninfo) else self._conninfo
        options = _SESSION_OPTIONS if self._startup_options else None  # None: not sent at all
        try:
            # Autocommit: a unit of work of one statement (`statement()`) is its own transaction, with no
            # BEGIN/COMMIT round trips; `transaction()` opens an explicit one.
            conn = psycopg.connect(info, row_factory=dict_row, options=options, connect_timeout=10, autocommit=True)
            if not self._startup_options:
                conn.execute(_SESSION_SET)  # type: ignore[arg-type]  # constant text, no parameters
            return conn
        except psycopg.OperationalError as exc:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {exc}") from exc

    def connection(self) -> psycopg.Connection[Row]:
        conn: psycopg.Connection[Row] | None = getattr(self._local, "conn", None)
        if conn is not None and not (conn.closed or conn.broken) and (self._idle_too_long() or _server_spoke(conn)):
            # A warm Lambda may hold a connection the server dropped (failover, idle timeout,
            # pg_terminate_backend): probe it once rather than fail the caller's first statement. The
            # server says so when it can (a FATAL message, then the end of the stream), and an idle
            # connection has nothing else to read: one non-blocking look at the socket, no round trip.
            try:
                conn.execute("SELECT 1")
            except psycopg.Error:
                conn.close()
        if conn is None or conn.closed or conn.broken:
            conn = self._connect()
            self._local.conn = conn
        self._local.last_used = time.monotonic()
        return conn

    def _idle_too_long(self) -> bool:
        return time.monotonic() - getattr(self._local, "last_used", 0.0) > IDLE_PROBE_SECONDS

    @contextmanager
    def transaction(self, *, pipeline: bool = False) -> Iterator[psycopg.Cursor[Row]]:
        """One unit of work: committed when the block ends, rolled back when it raises.

        pipeline: the statements go out in psycopg's pipeline mode: BEGIN and the statements queue up
        and are sent together when a result is fetched, the rest with the COMMIT when the block ends
        (a unit of work that reads once and writes after costs two round trips, not one per statement
        plus BEGIN and COMMIT). Each statement still runs on its own, in order, with its own snapshot.

        A dropped connection (failover, pg_terminate_backend) surfaces as DatabaseUnavailable,
        which callers treat as transient: the whole unit of work is retried, never half of it.
        """
        conn = self.connection()
        with self._guard(conn):
            if not pipeline:
                with conn.transaction(), conn.cursor() as cur:
                    yield cur
                return
            # BEGIN and COMMIT are queued as statements: psycopg's transaction() syncs the pipeline on
            # entering and leaving (a round trip each). A Sync does not end an explicit transaction.
            try:
                with conn.pipeline(), conn.cursor() as cur:
                    cur.execute("BEGIN")
                    yield cur
                    cur.execute("COMMIT")
            except BaseException:
                if not (conn.closed or conn.broken) and conn.info.transaction_status != TransactionStatus.IDLE:
                    conn.rollback()
                raise

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads that must agree with each other (a status made of several queries): every unit of work
        opened inside the block on this thread reads one REPEATABLE READ, READ ONLY snapshot (the inner
        transactions become savepoints of this one), so a change committed between two of the reads
        is either seen by all of them or by none."""
        conn = self.connection()
        with self._guard(conn), conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield

    @contextmanager
    def statement(self) -> Iterator[psycopg.Cursor[Row]]:
        """A unit of work of ONE statement: it runs in autocommit (the statement is its own transaction),
        so it costs one round trip. Each further statement on the cursor would be a unit of its own:
        use `transaction()` for more than one."""
        conn = self.connection()
        with self._guard(conn), conn.cursor() as cur:
            yield cur

    @contextmanager
    def _guard(self, conn: psycopg.Connection[Row]) -> Iterator[None]:
        try:
            yield
        except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
            if conn.broken or conn.closed:
                self._local.conn = None
            if isinstance(exc, psycopg.errors.LockNotAvailable | psycopg.errors.QueryCanceled):
                raise DatabaseUnavailable(f"database busy: {exc}") from exc
            raise DatabaseUnavailable(f"database connection lost: {exc}") from exc

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def database_for(settings: Settings) -> Database:
    return Database(lambda: resolve_conninfo(settings), startup_options=uses_startup_options(settings))


def columns(record: type[Any], table: str = "", *, but: tuple[str, ...] = ()) -> str:
    """The SELECT list of a record (a dataclass, or a pydantic model read as it is): its field names, which
    are the column names (those in `but` are selected apart, computed or under another name with AS)."""
    prefix = f"{table}." if table else ""
    names = record.model_fields if hasattr(record, "model_fields") else [f.name for f in dataclasses.fields(record)]
    return ", ".join(prefix + name for name in names if name not in but)


def select(cur: psycopg.Cursor[Row], record: type[T], query: Query, params: Params = ()) -> list[T]:
    """Run a query in the cursor's unit of work and map each row to `record` once, by column name
    (psycopg's `class_row`): the repositories hand typed records, not dicts, to the domain and the API."""
    with cur.connection.cursor(row_factory=class_row(record)) as typed:
        typed.execute(query, params)
        return typed.fetchall()


def select_one(cur: psycopg.Cursor[Row], record: type[T], query: Query, params: Params = ()) -> T | None:
    """`select` of a query that yields at most one row."""
    found = select(cur, record, query, params)
    return found[0] if found else None


def select_returned(cur: psycopg.Cursor[Row], record: type[T], query: Query, params: Params = ()) -> T:
    """`select` of a statement that always yields one row (RETURNING of a row known to exist, count(*))."""
    found = select(cur, record, query, params)
    if not found:  # pragma: no cover - the statement always yields a row here
        raise RuntimeError("statement returned no row")
    return found[0]


def one_row(cur: psycopg.Cursor[Row]) -> Row:
    """The row a statement that always yields one (RETURNING, count(*)) returned."""
    row = cur.fetchone()
    if row is None:  # pragma: no cover - RETURNING always yields a row here
        raise RuntimeError("statement returned no row")
    return row
