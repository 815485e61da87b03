"""Fixtures shared by every test folder."""

from __future__ import annotations

import os
from typing import Iterator

import pytest

from tests.postgres import PostgresServer, PostgresUnavailable


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL on 127.0.0.1 for this test session. Without it the tests skip on a
    developer's machine, but FAIL in CI (env CI set): CI must prove the destination works."""
    try:
        server = PostgresServer().start()
    except (PostgresUnavailable, OSError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL could not be started in CI: {exc}")
        pytest.skip(f"PostgreSQL not available: {exc} (apt-get install postgresql)")
    yield server
    server.stop()
