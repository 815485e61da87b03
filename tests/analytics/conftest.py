"""Fixtures for the analytics tests: the fixed data set in DuckDB and in a real PostgreSQL."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from typing import Any, Callable, Dict, Iterator, List

import pytest

import analytics
from tests.analytics import dataset

Query = Callable[[str], List[Dict[str, Any]]]


@pytest.fixture(scope="session")
def fixed_duckdb(tmp_path_factory) -> str:
    """A DuckDB file holding the fixed data set (written with plain DDL) and the stored views."""
    path = str(tmp_path_factory.mktemp("analytics") / "registry_etl.duckdb")
    dataset.write_duckdb(path)
    analytics.create_views(path)
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    exe = found[0] if found else shutil.which(name)
    assert exe, f"PostgreSQL's {name} is not installed (Debian package postgresql; .ci/run installs it)"
    return exe


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[Dict[str, Any]]:
    """A throwaway PostgreSQL server on loopback (as the `postgres` user when run as root)."""
    workdir = tempfile.mkdtemp(prefix="registry-etl-pg-")
    as_postgres: List[str] = []
    if os.geteuid() == 0:
        shutil.chown(workdir, "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(workdir, "data"), _free_port()
    subprocess.run(
        as_postgres + [_pg_bin("initdb"), "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    pg_ctl = _pg_bin("pg_ctl")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {workdir} -c fsync=off"
    subprocess.run(
        as_postgres + [pg_ctl, "-D", data, "-w", "-o", options, "-l", os.path.join(workdir, "log"), "start"],
        check=True, stdout=subprocess.DEVNULL,
    )
    try:
        yield {"host": "127.0.0.1", "port": port, "user": "postgres", "dbname": "postgres"}
    finally:
        subprocess.run(as_postgres + [pg_ctl, "-D", data, "-m", "immediate", "stop"], stdout=subprocess.DEVNULL)
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(scope="session")
def fixed_postgres(postgres_dsn) -> Dict[str, Any]:
    """A database holding the fixed data set (and the stored views)."""
    import psycopg2

    admin = psycopg2.connect(**postgres_dsn)
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("CREATE DATABASE analytics_fixed")
    admin.close()
    dsn = {**postgres_dsn, "dbname": "analytics_fixed"}
    conn = psycopg2.connect(**dsn)
    try:
        dataset.write_dbapi(conn)
        analytics.create_views(conn)
    finally:
        conn.close()
    return dsn


def _records(cursor: Any) -> List[Dict[str, Any]]:
    columns = [d[0] for d in cursor.description]
    return [dict(zip(columns, row)) for row in cursor.fetchall()]


@pytest.fixture(scope="session")
def _view_sessions() -> Iterator[Dict[tuple, Query]]:
    """Open sessions per (engine, parameters), reused across tests: creating the views costs
    more than querying them."""
    sessions: Dict[tuple, Query] = {}
    closers: List[Callable[[], None]] = []
    sessions["_closers"] = closers  # type: ignore[assignment]
    yield sessions
    for close in closers:
        close()


@pytest.fixture(params=["duckdb", pytest.param("postgres", marks=pytest.mark.peer)])
def open_views(request, _view_sessions) -> Callable[..., Query]:
    """open_views(**parameters) -> query(sql) over the fixed data set, views as temporary views
    (unqualified names), on DuckDB (file opened read-only) and on PostgreSQL."""
    engine = request.param
    closers = _view_sessions["_closers"]

    def open_(**parameters: int) -> Query:
        key = (engine, tuple(sorted(parameters.items())))
        if key in _view_sessions:
            return _view_sessions[key]
        if engine == "duckdb":
            conn = analytics.connect_readonly(request.getfixturevalue("fixed_duckdb"), **parameters)
            closers.append(conn.close)
            query = lambda sql: _records(conn.execute(sql))  # noqa: E731
        else:
            import psycopg2

            pg = psycopg2.connect(**request.getfixturevalue("fixed_postgres"))
            closers.append(pg.close)
            analytics.create_views(pg, temporary=True, **parameters)

            def query(sql: str) -> List[Dict[str, Any]]:
                with pg.cursor() as cursor:
                    cursor.execute(sql)
                    return _records(cursor)

        _view_sessions[key] = query
        return query

    open_.engine = engine  # type: ignore[attr-defined]
    return open_
