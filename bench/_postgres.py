"""A real PostgreSQL server: initdb in a temporary directory, started on a free loopback
port, removed on exit. The benchmarks run it durable (fsync and synchronous_commit on, as
in production); the tests (`tests/fakes/postgres.py`, over this class) without fsync.

    server = PostgresServer.start_new()      # initdb + start, free loopback port, temp dir
    url = server.create_database()           # a fresh database
    server.stop(); server.start()            # an outage, and the database coming back
    server.close()                           # stop and remove everything

It runs Debian's binaries (`/usr/lib/postgresql/<version>/bin`, the `postgresql` package
`.ci/run` installs). PostgreSQL refuses to run as root: as root, every server command runs
as the unprivileged `postgres` user (the package creates it) through `runuser`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

from demo.simulators.server import free_port

SERVER_USER = "postgres"  # the OS user the server runs as when started as root
START_SECONDS = 30


class NotInstalled(RuntimeError):
    """No PostgreSQL binaries on this machine."""


def binaries() -> Path:
    """The newest installed PostgreSQL's bin directory."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    if not found:
        raise NotInstalled(
            "PostgreSQL is not installed: the STATE_BACKEND=postgres tests and benchmarks need "
            "a real server. Install Debian's package (`apt-get install -y postgresql`, which "
            ".ci/run does)."
        )
    return found[-1].parent


class PostgresServer:
    """One server; `create_database()` hands out fresh databases on it."""

    def __init__(self, root: Path, port: int, *, durable: bool) -> None:
        self.root = root
        self.data = root / "data"
        self.port = port
        self.durable = durable
        self._bin = binaries()
        self._names = itertools.count(1)

    @classmethod
    def start_new(cls, *, durable: bool = True) -> PostgresServer:
        """initdb in a new temporary directory and start. `durable`: fsync and
        synchronous_commit on, as in production (benchmarks); the tests turn it off (a
        crash of the machine is not what they are about)."""
        root = Path(tempfile.mkdtemp(prefix="sre-agent-pg-"))
        os.chmod(root, 0o755)
        server = cls(root, free_port(), durable=durable)
        server._initdb()
        server.start()
        return server

    @property
    def admin_url(self) -> str:
        return self.url("postgres")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """A new empty database on this server; its URL."""
        name = f"db_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def settings(self) -> dict[str, str]:
        """The durability settings in force, as the server reports them."""
        names = ("server_version", "fsync", "synchronous_commit", "wal_sync_method")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            rows = {name: conn.execute(f"SHOW {name}").fetchone() for name in names}
        return {name: str(row[0]) if row else "?" for name, row in rows.items()}

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
        """The end of the server's log (empty before it has one)."""
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


@contextlib.contextmanager
def postgres() -> Iterator[PostgresServer]:
    """A durable server for the span of the `with`; stopped and removed afterwards."""
    server = PostgresServer.start_new()
    try:
        yield server
    finally:
        server.close()
