"""Retries are counted whoever makes them: botocore (ECR) and dlt's HTTP client (REST sources)."""

from __future__ import annotations

import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from dlt.sources.helpers.requests import Client

from pipelines.load import run_load
from pipelines.observe import RetryCounter
from sources.concurrency import map_in_processes
from tests.support import new_pipeline


def test_ecr_throttling_retries_are_counted_in_the_summary(tmp_path, ecr_env_throttled):
    emulator = ecr_env_throttled
    summary = run_load(new_pipeline(tmp_path), ["ecr"])
    assert emulator.faults_injected["throttle"] > 0
    assert summary.retries == emulator.faults_injected["throttle"]
    # every attempt is a request: the counted calls include the retried ones
    assert sum(summary.requests.values()) == sum(emulator.counters.values())


class _FlakyHandler(BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self):  # noqa: N802 - http.server's naming
        type(self).calls += 1
        status = 503 if type(self).calls <= 2 else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def test_dlt_http_client_retries_are_counted():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        with RetryCounter() as retries:
            client = Client(request_backoff_factor=0, request_max_attempts=5, raise_for_status=False)
            response = client.get(f"http://127.0.0.1:{server.server_address[1]}/v2/")
        assert response.status_code == 200
        assert retries.count == 2 == _FlakyHandler.calls - 1
    finally:
        server.shutdown()
        server.server_close()


def _log_like_botocore(attempts: int) -> list:
    """In a worker process: botocore's records for `attempts` retries and the final answer."""
    logger = logging.getLogger("botocore.retries.standard")
    for attempt in range(attempts):
        logger.debug("Retry needed, retrying request after delay of: %s", 0)
    logger.debug("Not retrying request.")
    return [type(f).__name__ for f in logger.filters]


def test_worker_processes_count_retries_and_keep_the_per_call_records_to_themselves():
    """botocore logs "Not retrying request." after every call: workers drop it before it
    crosses to the loading process (a pickled record per call), and still send the retries."""
    seen = []

    class Capture(logging.Handler):
        def emit(self, record):
            seen.append(record.getMessage())

    capture = Capture(logging.DEBUG)
    # not debugging (an earlier test in this process may have turned DEBUG on for the project)
    project = logging.getLogger("registry_etl")
    saved_level = project.level
    project.setLevel(logging.INFO)
    try:
        with RetryCounter() as retries:
            logging.getLogger("botocore.retries.standard").addHandler(capture)
            try:
                filters = list(map_in_processes(_log_like_botocore, [2, 0, 3], 2))
            finally:
                logging.getLogger("botocore.retries.standard").removeHandler(capture)
    finally:
        project.setLevel(saved_level)
    assert retries.count == 5
    assert filters == [["RetryRecordsOnly"]] * 3
    assert len(seen) == 5 and all(m.startswith("Retry needed") for m in seen)
    assert not logging.getLogger("botocore.retries.standard").filters  # removed on exit
