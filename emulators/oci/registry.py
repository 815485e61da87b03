"""A real OCI registry on loopback: Debian's `docker-registry` (CNCF distribution 2.8).

`RegistryProcess` writes a temporary config (loopback only, filesystem storage, deletes enabled,
optionally htpasswd basic auth or token auth), starts `docker-registry serve` and waits until
`GET /v2/` answers. It never touches `/etc/docker/registry/config.yml`, which listens on all
interfaces (shared/reference/test-servers.md).
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, Optional

import requests

log = logging.getLogger("registry_etl.emulators.oci")

REGISTRY_BINARY = "/usr/bin/docker-registry"
HTPASSWD_BINARY = "/usr/bin/htpasswd"


class RegistryUnavailable(RuntimeError):
    """The `docker-registry` binary is missing or the server did not come up."""


def registry_binary() -> Optional[str]:
    """The registry binary's path, or None when the Debian package is not installed."""
    found = shutil.which("docker-registry") or (REGISTRY_BINARY if os.path.exists(REGISTRY_BINARY) else None)
    return found


def _die_with_parent() -> None:
    """Linux: the registry gets SIGTERM when the process that started it dies, even by SIGKILL,
    so an interrupted test run or demo leaves no server behind."""
    try:
        import ctypes
        import signal

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # not Linux/glibc: best effort only
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def htpasswd_line(username: str, password: str) -> str:
    """A bcrypt htpasswd entry (the only hash the registry accepts), made by Debian's htpasswd."""
    if not os.path.exists(HTPASSWD_BINARY):
        raise RegistryUnavailable(f"{HTPASSWD_BINARY} is missing: apt-get install apache2-utils")
    out = subprocess.run(
        [HTPASSWD_BINARY, "-Bbn", username, password], check=True, capture_output=True, text=True
    )
    return out.stdout.strip() + "\n"


class RegistryProcess:
    """One `docker-registry serve` process on 127.0.0.1 with its own temp storage."""

    def __init__(
        self,
        workdir: Optional[str] = None,
        *,
        htpasswd: Optional[Dict[str, str]] = None,
        token_auth: Optional[Dict[str, str]] = None,
        port: Optional[int] = None,
        in_memory: bool = True,
    ) -> None:
        self.in_memory = in_memory
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="oci-registry-"))
        self.htpasswd = htpasswd
        self.token_auth = token_auth
        self.port = port or free_port()
        self.process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _storage(self) -> str:
        if self.in_memory:  # several times faster to push into; gone when the process ends
            return "storage: {inmemory: {}, delete: {enabled: true}}"
        return (
            f"storage: {{cache: {{blobdescriptor: inmemory}}, filesystem: {{rootdirectory: {self.workdir / 'data'}}},"
            " delete: {enabled: true}}"
        )

    def _config(self) -> str:
        lines = [
            "version: 0.1",
            "log: {level: warn, accesslog: {disabled: true}}",
            self._storage(),
            f"http: {{addr: 127.0.0.1:{self.port}}}",
        ]
        if self.htpasswd:
            path = self.workdir / "htpasswd"
            path.write_text("".join(htpasswd_line(u, p) for u, p in self.htpasswd.items()))
            lines.append(f"auth: {{htpasswd: {{realm: basic-realm, path: {path}}}}}")
        elif self.token_auth:
            t = self.token_auth
            lines.append(
                f"auth: {{token: {{realm: \"{t['realm']}\", service: \"{t['service']}\","
                f" issuer: \"{t['issuer']}\", rootcertbundle: {t['rootcertbundle']}}}}}"
            )
        return "\n".join(lines) + "\n"

    def start(self, timeout_s: float = 15.0) -> "RegistryProcess":
        binary = registry_binary()
        if not binary:
            raise RegistryUnavailable(
                "the `docker-registry` binary is not installed (Debian: apt-get install docker-registry)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "config.yml"
        config.write_text(self._config())
        self._log = open(self.workdir / "registry.log", "wb")
        self.process = subprocess.Popen(
            [binary, "serve", str(config)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RegistryUnavailable(f"docker-registry exited at start: {self.log_text()[-500:]}")
            try:
                if requests.get(self.url + "/v2/", timeout=1).status_code in (200, 401):
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RegistryUnavailable(f"docker-registry did not answer on {self.url} within {timeout_s} s")

    def log_text(self) -> str:
        try:
            return (self.workdir / "registry.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            # the registry takes ~1.5 s to stop on SIGTERM; its storage is a temp dir we discard
            self.process.kill()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if getattr(self, "_log", None):
            self._log.close()
            self._log = None
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> "RegistryProcess":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
