"""A throwaway PostgreSQL server on loopback for the destination tests (Debian's package)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from typing import Optional

PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
PASSWORD = "pg-test-password-7d1c"  # a throwaway server's superuser password


class PostgresUnavailable(RuntimeError):
    """The server could not be started (not installed, or failed to start)."""


def _bin_dir() -> str:
    dirs = sorted(glob.glob(PG_BIN_GLOB), key=lambda d: int(d.split("/")[-2]) if d.split("/")[-2].isdigit() else 0)
    for candidate in reversed(dirs):
        if os.path.exists(os.path.join(candidate, "initdb")):
            return candidate
    raise PostgresUnavailable("PostgreSQL binaries not found under /usr/lib/postgresql (apt-get install postgresql)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PostgresServer:
    """initdb + pg_ctl start in a temp dir, as the `postgres` user when running as root."""

    port: int = 0
    root: Optional[str] = None
    bin_dir: Optional[str] = None

    password: str = PASSWORD

    @property
    def credentials(self) -> str:
        return f"postgresql://postgres:{PASSWORD}@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        command = list(args)
        if os.geteuid() == 0:  # initdb and postgres refuse to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            raise PostgresUnavailable(f"{' '.join(args[:1])} failed: {result.stderr.strip() or result.stdout.strip()}")

    def start(self) -> "PostgresServer":
        self.bin_dir = _bin_dir()
        self.root = tempfile.mkdtemp(prefix="registry-etl-pg-")
        data, sockets = os.path.join(self.root, "data"), os.path.join(self.root, "sock")
        os.makedirs(sockets)
        pwfile = os.path.join(self.root, "pwfile")
        with open(pwfile, "w") as handle:
            handle.write(PASSWORD + "\n")
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(sockets, "postgres")
            shutil.chown(pwfile, "postgres")
        self.port = _free_port()
        self._run(
            os.path.join(self.bin_dir, "initdb"), "-D", data, "-U", "postgres", f"--pwfile={pwfile}",
            "--auth-local=trust", "--auth-host=scram-sha-256", "--no-sync",
        )
        self._run(
            os.path.join(self.bin_dir, "pg_ctl"), "-D", data, "-w", "-l", os.path.join(self.root, "log"),
            "-o", f"-c listen_addresses=127.0.0.1 -p {self.port} -k {sockets} -c fsync=off -c full_page_writes=off",
            "start",
        )
        return self

    def stop(self) -> None:
        if self.root and self.bin_dir:
            try:
                self._run(os.path.join(self.bin_dir, "pg_ctl"), "-D", os.path.join(self.root, "data"), "-m", "immediate", "stop")
            except PostgresUnavailable:
                pass
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None
