"""The real runtime as a production-like subprocess: `python -m uvicorn main:app` (one
worker, settings from a generated environment), its outside world in a second process
(bench/fakes_process.py). Both bind 127.0.0.1 only and are stopped on exit.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench._common import (
    PYTHON,
    environment,
    process,
    settings_values,
    stop,
    wait_http_ok,
)
from demo.simulators.server import free_port

SERVICE = "checkout"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    spawned_at: float  # time.monotonic() just before the spawn
    workdir: Path
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def errors_logged(self) -> int:
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return sum(
            '"level": "ERROR"' in line or '"levelname": "ERROR"' in line
            for line in text.splitlines()
        )


@contextlib.contextmanager
def fakes(workdir: Path, *, llm_delay: float, lifetime: float = 300) -> Iterator[dict[str, str]]:
    """Start bench.fakes_process; yield its URLs; stop it on exit."""
    args = [
        PYTHON,
        "-m",
        "bench.fakes_process",
        "--llm-delay",
        str(llm_delay),
        "--lifetime",
        str(lifetime),
    ]
    with (workdir / "fakes.log").open("wb") as log:
        proc = subprocess.Popen(
            args,
            cwd=Path(__file__).resolve().parents[1],
            env=environment({}),
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(f"fakes process exited: see {workdir / 'fakes.log'}")
            yield json.loads(line)
        finally:
            stop(proc)


def app_settings(urls: dict[str, str], workdir: Path, **overrides: Any) -> dict[str, Any]:
    return settings_values(
        registry=f"{SERVICE}|{urls['service']}|false",
        incidents_dir=workdir / "incidents",
        llm_api_base_url=urls["llm"],
        pagerduty_events_url=f"{urls['pagerduty']}/v2/enqueue",
        pagerduty_api_url=urls["pagerduty"],
        **overrides,
    )


@contextlib.contextmanager
def app_process(
    values: dict[str, Any], workdir: Path, *, wait: bool = True, name: str = "app"
) -> Iterator[Server]:
    """`python -m uvicorn main:app` on a free port, configured only through its environment."""
    port = free_port()
    args = [PYTHON, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)]
    log = workdir / f"{name}.log"
    spawned_at = time.monotonic()
    with process(args, env=environment(values), log=log) as proc:
        server = Server(proc, port, spawned_at, workdir, log)
        if wait:
            wait_http_ok(port, "/health", timeout=30, proc=proc)
        yield server


@contextlib.contextmanager
def stack(*, llm_delay: float, **overrides: Any) -> Iterator[Server]:
    """Fakes plus the app, in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="sre-bench-") as tmp:
        workdir = Path(tmp)
        with (
            fakes(workdir, llm_delay=llm_delay) as urls,
            app_process(app_settings(urls, workdir, **overrides), workdir) as server,
        ):
            yield server
