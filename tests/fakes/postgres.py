"""A real PostgreSQL server for the tests (CONTRACT §8): no mocks of the database.

    server = PostgresServer.start_new()      # initdb + start, free loopback port, temp dir
    url = server.create_database()           # a fresh database for one test
    server.stop(); server.start()            # an outage, and the database coming back
    server.close()                           # stop and remove everything

It runs Debian's binaries (`/usr/lib/postgresql/<version>/bin`, the `postgresql` package
`.ci/run` installs). PostgreSQL refuses to run as root: as root, every server command runs
as the unprivileged `postgres` user (the package creates it) through `runuser`. A missing
installation fails the test that needs it, loudly; it is never skipped.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import psycopg
import pytest

SERVER_USER = "postgres"  # the OS user the server runs as when the tests run as root
START_SECONDS = 30


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory, or a failed test saying what to do."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        pytest.fail(
            "PostgreSQL is not installed: the STATE_BACKEND=postgres tests need a real server. "
            "Install Debian's package (`apt-get install -y postgresql`, which .ci/run does)."
        )
    return found[-1].parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgresServer:
    def __init__(self, root: Path, port: int, *, durable: bool = False) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.durable = durable
        self._bin = binaries()
        self._names = itertools.count(1)

    @classmethod
    def start_new(cls, *, durable: bool = False) -> PostgresServer:
        """initdb in a new temporary directory and start. `durable`: fsync on, as in
        production (benchmarks); off by default (tests: a crash of the machine is not what
        they are about)."""
        root = Path(tempfile.mkdtemp(prefix="sre-agent-pg-"))
        os.chmod(root, 0o755)
        server = cls(root, free_port(), durable=durable)
        server._initdb()
        server.start()
        return server

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database on this server; its URL."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -k {self.root} "
            "-c max_connections=300 -c shared_buffers=128MB"
        )
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run(
            "pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"),
            "-o", options, "-w", "-t", str(START_SECONDS), "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clients disconnected) or `immediate` (a crash)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def close(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def log(self) -> str:
        try:
            return (self.root / "server.log").read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _initdb(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.root, SERVER_USER)
        self._run(
            "initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if result.returncode != 0:
            raise subprocess.CalledProcessError(
                result.returncode, command, result.stdout, result.stderr + self.log()
            )
