"""PostgreSQL for the local stack: the server in DATABASE_URL, or an embedded one it starts itself.

The embedded server is `pgserver` (PostgreSQL 16 binaries from PyPI) with its data folder under the
project (default `.local/pgdata`). It listens on a unix socket only (no TCP port to collide with), is
started on demand and stopped when the stack stops. First start (initdb) takes about 2 s, later starts
about 0.2 s. Caveat: run as root, pgserver creates a system user `pgserver` (useradd) to own the data
folder, and opens read/traverse permissions on the folders above it.
"""

from __future__ import annotations

import contextlib
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

LOGGER = logging.getLogger(__name__)

DEFAULT_DATABASE = "upgrades"


class PostgresUnavailable(RuntimeError):
    """The configured PostgreSQL cannot be reached (or the embedded one cannot start)."""


@dataclass
class LocalPostgres:
    """Where the local stack's database lives; `start()` returns the libpq URL to use."""

    database_url: str | None = None
    data_dir: Path = Path(".local/pgdata")
    database: str = DEFAULT_DATABASE
    url: str = ""
    embedded: bool = False
    started_seconds: float = 0.0
    _server: Any = field(default=None, repr=False)

    def start(self) -> str:
        began = time.monotonic()
        if self.database_url:
            self.url = self.database_url
            _check_reachable(self.url)
        else:
            self.url = self._start_embedded()
        self.started_seconds = time.monotonic() - began
        return self.url

    def _start_embedded(self) -> str:
        with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
            warnings.simplefilter("ignore")
            import pgserver  # late: only the embedded mode needs it

        data_dir = self.data_dir.expanduser().resolve()
        data_dir.parent.mkdir(parents=True, exist_ok=True)
        # Quiet pgserver's own INFO chatter; its errors still surface as exceptions.
        logging.getLogger("pgserver").setLevel(logging.WARNING)
        self._server = pgserver.get_server(data_dir, cleanup_mode="stop")
        self.embedded = True
        admin_url = self._server.get_uri()
        _create_database(admin_url, self.database)
        return _with_dbname(admin_url, self.database)

    @property
    def pid(self) -> int | None:
        """The embedded postmaster's process id (None for an external server)."""
        if self._server is None:
            return None
        return int(self._server.get_pid())

    def describe(self) -> str:
        if self.embedded:
            return (
                f"embedded PostgreSQL 16 (pgserver) in {self.data_dir.expanduser().resolve()}, database {self.database}"
            )
        return f"PostgreSQL from DATABASE_URL ({_redacted(self.url)})"

    def stop(self) -> None:
        """Stop the embedded server (`pg_ctl stop`, fast mode: open connections are closed)."""
        server, self._server = self._server, None
        if server is None:
            return
        try:
            server.cleanup()
        except Exception:  # noqa: BLE001 - fall back to terminating the postmaster ourselves
            LOGGER.warning("pg_ctl stop failed; terminating the embedded postmaster", exc_info=True)
            info = server._postmaster_info
            process = getattr(info, "process", None)
            if process is not None and process.is_running():
                process.terminate()
                with contextlib.suppress(Exception):
                    process.wait(5)

    def __enter__(self) -> LocalPostgres:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _with_dbname(url: str, dbname: str) -> str:
    return make_conninfo(url, dbname=dbname)


def _create_database(admin_url: str, name: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if exists is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def _check_reachable(url: str) -> None:
    try:
        with psycopg.connect(url, connect_timeout=5):
            pass
    except psycopg.OperationalError as exc:
        raise PostgresUnavailable(
            f"cannot connect to the PostgreSQL in DATABASE_URL ({_redacted(url)}): {exc}"
        ) from exc


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    try:
        parts = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<unparseable DATABASE_URL>"
    if parts.get("password"):
        parts["password"] = "***"  # noqa: S105 - a mask, not a password
    return make_conninfo(**{k: str(v) for k, v in parts.items() if v is not None})
