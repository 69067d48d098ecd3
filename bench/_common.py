"""What every benchmark shares: results files, percentiles, GCP payloads, settings, processes.

Nothing here reaches past 127.0.0.1: servers bind loopback and every process started here
is ended (SIGTERM, then SIGKILL after a bound) by the code that started it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
PYTHON = sys.executable
GCP_SAMPLE = ROOT / "tests" / "data" / "gcp" / "metric-threshold-open-v1.2-cloudforet.json"
PROMPT = ROOT / "WINDSURF_SRE.md"
SECRETS = {
    "llm_api_key": "sk-bench-llm-key-0123456789abcdef",
    "pagerduty_api_token": "pd-bench-token-0123456789",
    "pagerduty_routing_key": "R0123456789ABCDEF0123456789ABCDE",
    "ops_auth_token": "ops-bench-token-0123456789abcdef",
}
TOKEN = SECRETS["ops_auth_token"]


def write_result(name: str, data: dict[str, Any]) -> Path:
    """Write `bench/results/<name>.json` (with the machine's core count) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {"benchmark": name, "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    path.write_text(json.dumps({**payload, **data}, indent=2) + "\n", encoding="utf-8")
    return path


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


# ---------------------------------------------------------------- payloads


def gcp_payload(incident_id: str, service: str) -> dict[str, Any]:
    """A real GCP incident-schema 1.2 notification (2.3 KB), re-keyed and labelled."""
    payload: dict[str, Any] = json.loads(GCP_SAMPLE.read_text(encoding="utf-8"))
    incident = payload["incident"]
    incident["incident_id"] = incident_id
    incident["metadata"]["user_labels"]["service"] = service
    return payload


def gcp_body_template(service: str, width: int = 12) -> tuple[bytes, bytes]:
    """(prefix, suffix) around a `width`-character incident id, so bodies keep one length."""
    marker = "X" * width
    body = json.dumps(gcp_payload(marker, service), separators=(",", ":")).encode()
    prefix, _, suffix = body.partition(marker.encode())
    return prefix, suffix


# ---------------------------------------------------------------- settings & environment


def settings_values(*, registry: str, incidents_dir: Path, **overrides: Any) -> dict[str, Any]:
    """Keyword values for `config.load_settings` (lower-case field names)."""
    return {
        **SECRETS,
        "service_registry": registry,
        "sre_prompt_path": str(PROMPT),
        "incidents_dir": str(incidents_dir),
        **overrides,
    }


def environment(values: dict[str, Any]) -> dict[str, str]:
    """The same values as the process environment `uvicorn main:app` reads."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update({name.upper(): str(value) for name, value in values.items()})
    env["PYTHONPATH"] = str(ROOT)
    return env


# ---------------------------------------------------------------- processes


@contextlib.contextmanager
def process(
    args: list[str], *, env: dict[str, str], log: Path
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `args` with output to `log`; on exit SIGTERM, wait 5 s, then SIGKILL."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def wait_http_ok(port: int, path: str, *, timeout: float, proc: subprocess.Popen[bytes]) -> float:
    """Poll `GET path` every 5 ms until 200; return the monotonic time it first answered."""
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before serving {path}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=1) as sock,
        ):
            sock.sendall(request)
            if sock.recv(64).startswith(b"HTTP/1.1 200"):
                return time.monotonic()
        time.sleep(0.005)
    raise TimeoutError(f"no 200 from 127.0.0.1:{port}{path} within {timeout}s")


def rss_mb(pid: int) -> float:
    """VmRSS of `pid` in MB (1024*1024 bytes), from /proc/<pid>/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of `pid`, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
