"""Footprint of the server process: startup time, idle RSS, RSS under webhook load.

The server is `python -m uvicorn main:app` in a subprocess, as in bench/webhook_load.py.
Startup = from just before the spawn to the first `GET /health` 200 (polled every 5 ms),
median of 3 starts. Idle RSS = VmRSS (/proc/<pid>/status) 1 s after the first 200, with
nothing queued. Under load = VmRSS sampled every 50 ms through the webhook_load phases
(every webhook queues a new incident: the queue holds ~3,000 alerts at the end).
Targets: idle <= 150 MB, startup <= 2 s.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from bench import webhook_load
from bench._common import met, rss_mb, write_result
from bench._server import app_process, app_settings, fakes

STARTS = 3
IDLE_MB_TARGET = 150.0
STARTUP_S_TARGET = 2.0


def main() -> None:
    startups: list[float] = []
    idle: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sre-bench-footprint-") as tmp:
        workdir = Path(tmp)
        with fakes(workdir, llm_delay=webhook_load.LLM_DELAY_SECONDS) as urls:
            values = app_settings(urls, workdir, max_queue_size=1_000_000)
            for n in range(STARTS):
                with app_process(values, workdir, name=f"app{n}") as server:
                    startups.append(time.monotonic() - server.spawned_at)
                    time.sleep(1.0)
                    idle.append(rss_mb(server.pid))
                    if n == STARTS - 1:
                        measured = asyncio.run(webhook_load.drive(server))
    startup, idle_mb = statistics.median(startups), statistics.median(idle)
    load = measured["rss_mb"]
    queued = measured["webhook"].requests
    result = {
        "startup_seconds": {"median": round(startup, 3), "all": [round(s, 3) for s in startups]},
        "idle_rss_mb": {"median": round(idle_mb, 1), "all": [round(m, 1) for m in idle]},
        "load_rss_mb": {k: round(v, 1) for k, v in load.items()},
        "webhooks_queued_in_measured_phase": queued,
        "targets": {
            "idle<=150MB": idle_mb <= IDLE_MB_TARGET,
            "startup<=2s": startup <= STARTUP_S_TARGET,
        },
    }
    path = write_result("footprint", result)
    print(
        f"footprint: startup {startup:.2f} s ({met(startup <= STARTUP_S_TARGET)} <= 2 s) | idle "
        f"RSS {idle_mb:.0f} MB ({met(idle_mb <= IDLE_MB_TARGET)} <= 150 MB) | under webhook load"
        f" peak {load['peak']:.0f} MB ({load['before_load']:.0f} -> {load['after_load']:.0f} MB "
        f"over {queued:,} newly queued alerts) -> {path.relative_to(path.parents[2])}"
    )


if __name__ == "__main__":
    main()
