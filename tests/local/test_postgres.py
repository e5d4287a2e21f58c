"""The local stack's PostgreSQL: DATABASE_URL when given, else an embedded pgserver it stops itself."""

from __future__ import annotations

import psutil
import psycopg
import pytest

from upgradectl.local.postgres import LocalPostgres, PostgresUnavailable


def _postmasters_for(data_dir) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if proc.info["name"] == "postgres" and str(data_dir) in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


def test_database_url_is_used_as_given(database_url):
    pg = LocalPostgres(database_url=database_url)
    assert pg.start() == database_url
    assert pg.embedded is False and pg.pid is None and "DATABASE_URL" in pg.describe()
    pg.stop()  # nothing to stop: the server is not ours


def test_unreachable_database_url_is_a_clear_error():
    pg = LocalPostgres(database_url="postgresql://nobody:secret@127.0.0.1:1/x")
    with pytest.raises(PostgresUnavailable) as raised:
        pg.start()
    assert "secret" not in str(raised.value) and "127.0.0.1" in str(raised.value)


@pytest.mark.slow
def test_embedded_server_starts_in_the_folder_and_stops_on_exit(tmp_path):
    # Given no DATABASE_URL and a data folder
    data_dir = tmp_path / "pgdata"
    # When the local stack's PostgreSQL starts
    with LocalPostgres(data_dir=data_dir) as pg:
        # Then it runs from that folder, with the upgrades database, reachable through the URL
        assert pg.embedded and (data_dir / "PG_VERSION").is_file()
        assert pg.pid is not None and psutil.pid_exists(pg.pid)
        with psycopg.connect(pg.url) as conn:
            assert conn.execute("SELECT current_database()").fetchone() == ("upgrades",)
        assert _postmasters_for(data_dir)
    # And when it stops, no postgres process of that folder is left
    assert _postmasters_for(data_dir) == []
    # And a second start reuses the folder (no initdb)
    with LocalPostgres(data_dir=data_dir) as again, psycopg.connect(again.url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    assert _postmasters_for(data_dir) == []
