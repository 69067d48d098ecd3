"""Cost of the request path: ns per `RuntimeState.record_request` and per `metrics()` call.

Run from the project root: `.venv/bin/python -m bench.bench_state`.
No OpenTelemetry SDK is installed here, as in production without OTEL_EXPORTER_OTLP_ENDPOINT;
`record_request` touches no instrument either way.
"""

from __future__ import annotations

import time

from state import RuntimeState

ROUTES = ("/webhook/{provider}", "/ops/status", "/ops/metrics", "/health")


def bench_record_request(calls: int) -> float:
    state = RuntimeState()
    start = time.perf_counter_ns()
    for i in range(calls):
        state.record_request(route=ROUTES[i & 3], status=200 + (i % 7) * 50, duration_s=i * 1e-6)
    return (time.perf_counter_ns() - start) / calls


def bench_metrics(calls: int) -> float:
    state = RuntimeState()
    for i in range(10_000):
        state.record_request(route=ROUTES[i & 3], status=200, duration_s=i * 1e-5)
    start = time.perf_counter_ns()
    for _ in range(calls):
        state.metrics(running=1, queued=2, limit=3, queue_max=1000)
    return (time.perf_counter_ns() - start) / calls


def main() -> None:
    print(f"record_request: {bench_record_request(500_000):8.0f} ns/call")
    print(f"metrics():      {bench_metrics(500):8.0f} ns/call")


if __name__ == "__main__":
    main()
