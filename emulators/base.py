"""The shared machinery of the emulators: a threaded HTTP server on loopback, request
counters per operation, and fault injection (latency, throttling every Nth call, 5xx every Mth,
dropped connections, truncated bodies).

A registry emulator subclasses `Emulator`, names the operation of each request in
`operation()` and answers it in `handle()`; faults are injected before `handle()` runs, in the
registry's own error shape (`throttle_response()`, `server_error_response()`).

Tests can also bend answers (`corrupt()`: rewrite the answers of one operation, to serve bad
records) and stop time at a chosen request (`hold()`: the Nth call of an operation blocks until
released, so a test can kill the client at a known point).

Every emulator also answers `GET /_emulator/counters` (JSON) so that a process that did not
start it (the CLI, a benchmark) can read its counters, `POST /_emulator/reset-counters`,
`POST /_emulator/mutate` (`{"move_tags": n, "delete_tags": n, "push_images": n}`: changes the
served inventory as users would between two loads) and `POST /_emulator/faults` (new `Faults`
fields, e.g. `{"latency_ms": 20}`).
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

log = logging.getLogger("registry_etl.emulators")


class EmulatorServer(ThreadingHTTPServer):
    """The emulators' HTTP server: a thread per connection, and a listen backlog a registry's
    front end would have. socketserver's default backlog is 5: when a load opens its 16
    connections at once, the kernel drops the connection attempts beyond it and the client
    resends them after a second (counted as ListenOverflows by `nstat`), a stall no real
    registry causes."""

    daemon_threads = True
    request_queue_size = 1024


@dataclass
class Faults:
    """What to break: each `*_every` counts requests (all operations together); 0 = never."""

    latency_ms: float = 0.0
    throttle_every: int = 0
    error_every: int = 0
    drop_every: int = 0
    truncate_every: int = 0
    retry_after_s: int = 0


@dataclass
class Request:
    method: str
    path: str  # raw path, percent-encoding kept
    query: Dict[str, list]
    headers: Dict[str, str]
    body: bytes
    raw_query: str = ""

    def param(self, name: str, default: Optional[str] = None) -> Optional[str]:
        values = self.query.get(name)
        return values[0] if values else default

    def json(self) -> Any:
        return json.loads(self.body or b"{}")

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int = 200
    body: Any = None  # dict/list -> JSON, bytes/str as is
    headers: Dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


Rewriter = Callable[[Request, Response], Optional[Response]]


@dataclass
class Rewrite:
    """A test hook: `fn(request, response)` edits the answer of `operation` ("*" = any) in
    place (`response.body` is the decoded JSON object) or returns a new `Response`."""

    operation: str
    fn: Rewriter
    times: Optional[int] = None  # rewrite this many answers, then stop; None = all
    applied: int = 0


class Hold:
    """A test hook: the `nth` call of `operation` blocks until `release()`; `reached` is set
    when it arrives, so a test knows the client is waiting right there."""

    def __init__(self, operation: str, nth: int = 1) -> None:
        self.operation, self.nth = operation, nth
        self.reached = threading.Event()
        self._released = threading.Event()

    def release(self) -> None:
        self._released.set()

    def wait_released(self, timeout: float = 120.0) -> None:
        self._released.wait(timeout)


class Emulator:
    """Base class: subclasses set `name` and implement `operation()` and `handle()`."""

    name = "emulator"
    # how often the server thread checks for `stop()` (seconds): socketserver's 0.5 s, shorter
    # for emulators that tests start by the dozen
    poll_interval = 0.5

    def __init__(self, faults: Optional[Faults] = None) -> None:
        self.faults = faults or Faults()
        self.counters: collections.Counter = collections.Counter()
        self.faults_injected: collections.Counter = collections.Counter()
        # requests being answered now, and the most at once (a source's concurrency bound)
        self.in_flight = 0
        self.peak_in_flight = 0
        self._requests = 0
        self._lock = threading.Lock()
        self._server: Optional[EmulatorServer] = None
        self._thread: Optional[threading.Thread] = None
        self.rewrites: List[Rewrite] = []
        self.holds: List[Hold] = []

    # ---- to implement
    def operation(self, request: Request) -> str:
        raise NotImplementedError

    def handle(self, request: Request, operation: str) -> Response:
        raise NotImplementedError

    def throttle_response(self, operation: str) -> Response:
        return Response(429, {"message": "Too many requests"}, {"Retry-After": str(self.faults.retry_after_s)})

    def server_error_response(self, operation: str) -> Response:
        return Response(503, {"message": "Service unavailable"})

    # ---- lifecycle
    def start(self, host: str = "127.0.0.1", port: int = 0) -> "Emulator":
        handler = _make_handler(self)
        self._server = EmulatorServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(self.poll_interval,), name=f"{self.name}-emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "Emulator":
        return self.start() if self._server is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def address(self) -> Tuple[str, int]:
        assert self._server, "emulator not started"
        return self._server.server_address[:2]  # type: ignore[return-value]

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def mutate(self, changes: Dict[str, int]) -> Dict[str, int]:
        """Apply inventory mutations (`move_tags`, `delete_tags`, `push_images`: counts) to the
        served `self.inventory`; returns how many of each were made."""
        inventory = getattr(self, "inventory", None)
        if inventory is None:
            raise ValueError(f"the {self.name} emulator serves no inventory")
        done: Dict[str, int] = {}
        with self._lock:
            for kind in ("move_tags", "delete_tags", "push_images"):
                count = int(changes.get(kind) or 0)
                if count:
                    done[kind] = len(getattr(inventory, kind)(count))
            self.inventory_changed()
        return done

    def inventory_changed(self) -> None:
        """Called after the inventory changed: subclasses drop what they cached from it."""

    # ---- test hooks
    def corrupt(self, operation: str, fn: Rewriter, times: Optional[int] = None) -> Rewrite:
        """Rewrite the answers of `operation` (see `Rewrite`); returns the hook (`.applied`)."""
        rewrite = Rewrite(operation, fn, times)
        with self._lock:
            self.rewrites.append(rewrite)
        return rewrite

    def hold(self, operation: str, nth: int = 1) -> Hold:
        """Block the `nth` call of `operation` (counted from now) until the hook is released."""
        hold = Hold(operation, self.counters[operation] + nth)
        with self._lock:
            self.holds.append(hold)
        return hold

    def clear_hooks(self) -> None:
        with self._lock:
            holds, self.holds, self.rewrites = self.holds, [], []
        for hold in holds:
            hold.release()

    def _apply_hooks(self, request: Request, operation: str, count: int, response: Response) -> Response:
        with self._lock:
            holds = [h for h in self.holds if h.operation == operation and h.nth == count]
            rewrites = [r for r in self.rewrites if r.operation in (operation, "*") and (r.times is None or r.applied < r.times)]
            for rewrite in rewrites:
                rewrite.applied += 1
        for hold in holds:
            hold.reached.set()
            hold.wait_released()
        for rewrite in rewrites:
            response = rewrite.fn(request, response) or response
        return response

    def reset_counters(self) -> None:
        with self._lock:
            self.counters.clear()
            self.faults_injected.clear()
            self.peak_in_flight = self.in_flight

    # ---- dispatch
    def _fault_for_request(self) -> Optional[str]:
        with self._lock:
            self._requests += 1
            n = self._requests
        f = self.faults
        for kind, every in (
            ("drop", f.drop_every),
            ("throttle", f.throttle_every),
            ("error", f.error_every),
            ("truncate", f.truncate_every),
        ):
            if every and n % every == 0:
                return kind
        return None

    def dispatch(self, request: Request) -> Tuple[Optional[str], Response]:
        if request.path.startswith("/_emulator/"):
            return None, self._control(request)
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            return self._dispatch(request)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _dispatch(self, request: Request) -> Tuple[Optional[str], Response]:
        if self.faults.latency_ms:
            time.sleep(self.faults.latency_ms / 1000.0)
        try:
            operation = self.operation(request)
        except Exception as exc:  # an unknown path is the client's bug: say so
            return None, Response(404, {"message": f"unknown operation: {exc}"})
        fault = self._fault_for_request()
        with self._lock:
            self.counters[operation] += 1
            count = self.counters[operation]
            if fault:
                self.faults_injected[fault] += 1
        if fault == "throttle":
            return fault, self.throttle_response(operation)
        if fault == "error":
            return fault, self.server_error_response(operation)
        if fault == "drop":
            return fault, Response(0)
        try:
            response = self.handle(request, operation)
        except Exception:
            log.exception("%s emulator failed on %s", self.name, operation)
            return None, self.server_error_response(operation)
        if self.holds or self.rewrites:
            response = self._apply_hooks(request, operation, count, response)
        return fault, response

    def _control(self, request: Request) -> Response:
        if request.path == "/_emulator/counters":
            with self._lock:
                return Response(200, {"requests": dict(self.counters), "faults": dict(self.faults_injected),
                                      "peak_in_flight": self.peak_in_flight})
        if request.path == "/_emulator/reset-counters" and request.method == "POST":
            self.reset_counters()
            return Response(200, {"ok": True})
        if request.path == "/_emulator/mutate" and request.method == "POST":
            try:
                return Response(200, {"changed": self.mutate(request.json())})
            except (ValueError, TypeError) as exc:
                return Response(400, {"message": str(exc)})
        if request.path == "/_emulator/faults" and request.method == "POST":
            try:
                changes = request.json()
                for key, value in changes.items():
                    if not hasattr(self.faults, key):
                        raise ValueError(f"unknown fault {key!r}")
                    setattr(self.faults, key, type(getattr(self.faults, key))(value))
            except (ValueError, TypeError, AttributeError) as exc:
                return Response(400, {"message": str(exc)})
            return Response(200, {"faults": vars(self.faults)})
        return Response(404, {"message": "unknown control path"})


def _make_handler(emulator: Emulator):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # headers and body go out in two writes: with Nagle on, a keep-alive client's delayed
        # ACK holds the body back ~40 ms on every call (measured: 45 ms -> 5 ms per NCP call)
        disable_nagle_algorithm = True

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: tests read counters instead
            log.debug("%s %s", emulator.name, fmt % args)

        def _serve(self) -> None:
            split = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                method=self.command,
                path=split.path,
                query=parse_qs(split.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                raw_query=split.query,
            )
            fault, response = emulator.dispatch(request)
            if fault == "drop":
                self.close_connection = True
                try:
                    self.connection.shutdown(2)
                except OSError:
                    pass
                return
            payload = response.payload()
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            for key, value in response.headers.items():
                self.send_header(key, value)
            if fault == "truncate" and len(payload) > 2:
                # announce the full length, send half, close: the client sees a broken body
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload[: len(payload) // 2])
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = _serve

    return Handler
