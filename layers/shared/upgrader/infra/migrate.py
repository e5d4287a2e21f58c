"""Apply the SQL migrations in `migrations/` in order; safe to run again and concurrently."""

from __future__ import annotations

import argparse
import sys
from importlib import resources

import psycopg

_LOCK_KEY = 727_001  # pg_advisory_xact_lock key: one migrator at a time


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("upgrader.infra").joinpath("migrations")
    names = sorted(p.name for p in folder.iterdir() if p.name.endswith(".sql"))
    return [(name, folder.joinpath(name).read_text(encoding="utf-8")) for name in names]


def apply_migrations(conninfo: str) -> list[str]:
    """Apply every migration not yet recorded; return the names applied now."""
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=False) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " name TEXT PRIMARY KEY, applied_at TIMESTAMP NOT NULL DEFAULT NOW())"
        )
        done = {row[0] for row in conn.execute("SELECT name FROM schema_migrations")}
        for name, sql in migration_files():
            if name in done:
                continue
            conn.execute(sql)  # type: ignore[arg-type]  # trusted files shipped with the package
            conn.execute("INSERT INTO schema_migrations (name) VALUES (%s)", (name,))
            applied_now.append(name)
    return applied_now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Apply the database migrations.")
    parser.add_argument("--database-url", help="libpq URL; default: DATABASE_URL / DB_SECRET_ARN")
    args = parser.parse_args(argv)
    if args.database_url:
        conninfo = args.database_url
    else:
        from upgrader.infra.db import resolve_conninfo
        from upgrader.infra.settings import get_settings

        conninfo = resolve_conninfo(get_settings())
    applied = apply_migrations(conninfo)
    print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none (up to date)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
