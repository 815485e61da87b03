from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch):
    """botocore's backoff sleeps up to a second per throttled call; the tests keep the retries
    (same attempts, same code path) but not the waiting."""
    from botocore.retries import standard

    monkeypatch.setattr(standard.ExponentialBackoff, "delay_amount", lambda self, context: 0.0)


def pytest_terminal_summary(terminalreporter):
    from tests.reliability.support import FIGURES

    if FIGURES:
        terminalreporter.section("reliability figures")
        for name in sorted(FIGURES):
            terminalreporter.write_line(f"{name}: {FIGURES[name]}")
