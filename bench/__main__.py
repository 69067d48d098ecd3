"""`python -m bench [name ...]`: run the benchmarks (all, or the named ones) in sequence.

Each runs in its own interpreter (`python -m bench.<name>`), so logging setup, tracemalloc
and event loops of one cannot skew the next. Each prints one line and writes
bench/results/<name>.json. Nothing here fails on speed: targets are printed as MET/NOT MET.
"""

from __future__ import annotations

import subprocess
import sys

from bench._common import ROOT, environment

BENCHMARKS = (
    "bench_state",
    "intake_throughput",
    "agent_overhead",
    "webhook_load",
    "footprint",
    "pager_storm",
    "postgres_load",
)
TIMEOUT_SECONDS = 600


def main(names: list[str]) -> int:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names or BENCHMARKS:
        done = subprocess.run(
            [sys.executable, "-m", f"bench.{name}"],
            cwd=ROOT,
            env=environment({}),
            timeout=TIMEOUT_SECONDS,
            check=False,
        )
        if done.returncode:
            failed.append(name)
    if failed:
        print(f"benchmarks that crashed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
