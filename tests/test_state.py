"""RuntimeState: percentiles, the sliding window, bounded memory, tokens, errors, verdicts."""

from __future__ import annotations

import tracemalloc
from datetime import UTC, datetime

import pytest

from state import (
    DEP_PAGERDUTY,
    MAX_ERROR_KINDS,
    MAX_ERROR_MESSAGE_CHARS,
    MAX_ROUTES,
    OTHER_ROUTE,
    RuntimeState,
    percentiles_ms,
    service_dependency,
)


class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> RuntimeState:
    return RuntimeState(clock=clock, window_seconds=300.0)


def latency(state: RuntimeState) -> dict[str, float | None]:
    result: dict[str, float | None] = state.metrics(running=0, queued=0, limit=3)["requests"][
        "latency_ms"
    ]
    return result


def test_percentiles_of_known_latencies_are_within_histogram_resolution(
    state: RuntimeState,
) -> None:
    for ms in range(1, 101):  # 1..100 ms, one request each
        state.record_request(route="/x", status=200, duration_s=ms / 1000)
    result = latency(state)
    for key, expected in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        assert result[key] == pytest.approx(expected, rel=0.05)


def test_percentiles_are_none_without_requests(state: RuntimeState) -> None:
    assert latency(state) == {"p50": None, "p95": None, "p99": None}


def test_percentile_helper_uses_nearest_rank() -> None:
    counts = [0] * 162
    counts[10], counts[100] = 99, 1
    p50, p99, p100 = percentiles_ms(counts, (0.5, 0.99, 1.0))
    assert p50 == p99
    assert p100 is not None
    assert p50 is not None
    assert p100 > p50


def test_tail_latency_shows_in_p99_but_not_p50(state: RuntimeState) -> None:
    for _ in range(98):
        state.record_request(route="/x", status=200, duration_s=0.010)
    for _ in range(2):
        state.record_request(route="/x", status=200, duration_s=2.0)
    result = latency(state)
    assert result["p50"] == pytest.approx(10.0, rel=0.05)
    assert result["p99"] == pytest.approx(2000.0, rel=0.05)


def test_old_requests_slide_out_of_the_window(state: RuntimeState, clock: FakeClock) -> None:
    for _ in range(10):
        state.record_request(route="/x", status=500, duration_s=1.0)
    clock.advance(200)
    for _ in range(10):
        state.record_request(route="/x", status=200, duration_s=0.001)
    requests = state.metrics(running=0, queued=0, limit=3)["requests"]
    assert requests["window_total"] == 20
    assert requests["error_rate"] == 0.5
    clock.advance(150)  # the 500s are now 350 s old
    requests = state.metrics(running=0, queued=0, limit=3)["requests"]
    assert requests["window_total"] == 10
    assert requests["error_rate"] == 0.0
    assert requests["latency_ms"]["p99"] == pytest.approx(1.0, rel=0.05)
    assert requests["lifetime_total"] == 20


def test_rate_and_error_shares(state: RuntimeState, clock: FakeClock) -> None:
    clock.advance(300)
    statuses = [200] * 80 + [404] * 15 + [503] * 5
    for status in statuses:
        state.record_request(route="/x", status=status, duration_s=0.01)
    requests = state.metrics(running=0, queued=0, limit=3)["requests"]
    assert requests["rate_per_second"] == pytest.approx(100 / 300, rel=0.01)
    assert requests["error_rate"] == 0.05
    assert requests["client_error_rate"] == 0.15


def test_memory_stays_bounded_over_100k_requests(state: RuntimeState, clock: FakeClock) -> None:
    routes = [f"/route/{i}" for i in range(1_000)]
    for i in range(10_000):  # warm up: every bucket and the route table get filled
        clock.advance(0.1)
        state.record_request(route=routes[i % 1_000], status=200, duration_s=i * 1e-4)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(100_000):
            clock.advance(0.05)
            state.record_request(route=routes[i % 1_000], status=500, duration_s=i * 1e-5)
        growth = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert growth < 64 * 1024
    by_route = state.metrics(running=0, queued=0, limit=3)["requests"]["by_route"]
    assert len(by_route) == MAX_ROUTES + 1
    assert OTHER_ROUTE in by_route


def test_tokens_last_hour_rolls(state: RuntimeState, clock: FakeClock) -> None:
    state.record_tokens(input_tokens=100, output_tokens=50)
    clock.advance(30 * 60)
    state.record_tokens(input_tokens=10, output_tokens=5)
    assert state.tokens_last_hour() == 165
    clock.advance(31 * 60)  # the first turn is now 61 minutes old
    assert state.tokens_last_hour() == 15
    clock.advance(60 * 60)
    assert state.tokens_last_hour() == 0
    usage = state.metrics(running=0, queued=0, limit=3)["token_usage"]
    assert usage == {
        "input": 110,
        "output": 55,
        "total": 165,
        "last_hour": 0,
        "per_incident_average": None,
    }


def test_runs_give_averages_and_tokens_per_incident(state: RuntimeState) -> None:
    state.record_run(ok=True, duration_s=10.0, tokens=1_000)
    state.record_run(ok=False, duration_s=30.0, tokens=3_000)
    metrics = state.metrics(running=0, queued=0, limit=3)
    assert metrics["agent_runs"] == {
        "completed": 1,
        "failed": 1,
        "average_duration_s": 20.0,
        "max_duration_s": 30.0,
    }
    assert metrics["token_usage"]["per_incident_average"] == 2_000


def test_webhook_and_intake_counters(state: RuntimeState) -> None:
    state.record_webhook("received", 3)
    state.record_webhook("ignored")
    state.record_intake("queued", 2)
    metrics = state.metrics(running=0, queued=0, limit=3)
    assert metrics["webhooks"] == {"received": 3, "processed": 0, "ignored": 1, "failed": 0}
    assert metrics["intake"] == {"queued": 2, "deduplicated": 0, "expired": 0}


def test_unknown_outcome_is_a_programming_error(state: RuntimeState) -> None:
    with pytest.raises(ValueError, match="unknown webhook outcome"):
        state.record_webhook("maybe")
    with pytest.raises(ValueError, match="unknown intake event"):
        state.record_intake("lost")


def test_saturation(state: RuntimeState) -> None:
    saturation = state.metrics(running=3, queued=200, limit=3, queue_max=1000)["saturation"]
    assert saturation == {
        "running": 3,
        "limit": 3,
        "ratio": 1.0,
        "queue_depth": 200,
        "queue_max": 1000,
        "queue_fill_ratio": 0.2,
    }


def test_errors_are_counted_bounded_and_newest_first() -> None:
    stamps = iter(datetime(2026, 1, 1, 0, 0, s, tzinfo=UTC) for s in range(60))
    state = RuntimeState(wall_clock=lambda: next(stamps))
    state.record_error("pagerduty", "first")
    state.record_error("pagerduty", "x" * 2_000)
    errors = state.errors()
    assert errors[0]["count"] == 2
    assert len(errors[0]["last_message"]) == MAX_ERROR_MESSAGE_CHARS
    assert errors[0]["last_seen"] == "2026-01-01T00:00:01+00:00"
    for i in range(MAX_ERROR_KINDS + 5):
        state.record_error(f"kind-{i}", "boom")
    errors = state.errors()
    assert len(errors) == MAX_ERROR_KINDS
    assert errors[0]["kind"] == f"kind-{MAX_ERROR_KINDS + 4}"
    assert "pagerduty" not in {e["kind"] for e in errors}  # least recently seen goes first


def test_dependencies_keep_the_last_status(state: RuntimeState) -> None:
    state.record_dependency(DEP_PAGERDUTY, ok=False, detail="503", latency_ms=12.5)
    state.record_dependency(DEP_PAGERDUTY, ok=True, latency_ms=8.0)
    record = state.dependencies()[DEP_PAGERDUTY]
    assert record["ok"] is True
    assert record["latency_ms"] == 8.0
    assert record["detail"] is None
    assert datetime.fromisoformat(record["last_seen"]).tzinfo is not None


# ---------------------------------------------------------------- verdict thresholds


def verdict(state: RuntimeState, **overrides: int) -> tuple[str, list[str]]:
    load = {"running": 0, "queued": 0, "limit": 3, "queue_max": 100, **overrides}
    return state.verdict(**load)


def record(state: RuntimeState, *, ok: int, failed: int) -> None:
    for status in [200] * ok + [500] * failed:
        state.record_request(route="/x", status=status, duration_s=0.01)


def test_idle_runtime_is_healthy(state: RuntimeState) -> None:
    assert verdict(state) == ("healthy", [])


def test_error_rate_over_half_is_unhealthy(state: RuntimeState) -> None:
    record(state, ok=4, failed=6)
    status, reasons = verdict(state)
    assert status == "unhealthy"
    assert "5xx rate 60%" in reasons[0]


def test_error_rate_over_five_percent_is_degraded(state: RuntimeState) -> None:
    record(state, ok=18, failed=2)
    assert verdict(state)[0] == "degraded"


def test_error_rate_at_five_percent_is_healthy(state: RuntimeState) -> None:
    record(state, ok=19, failed=1)
    assert verdict(state)[0] == "healthy"


def test_few_requests_never_move_the_verdict(state: RuntimeState) -> None:
    record(state, ok=0, failed=9)
    assert verdict(state)[0] == "healthy"


def test_full_queue_is_unhealthy(state: RuntimeState) -> None:
    status, reasons = verdict(state, queued=100, running=3)
    assert status == "unhealthy"
    assert "intake queue full (100/100)" in reasons


def test_queue_over_80_percent_is_degraded(state: RuntimeState) -> None:
    assert verdict(state, queued=81, running=1)[0] == "degraded"
    assert verdict(state, queued=80, running=1)[0] == "healthy"


def test_all_slots_busy_with_alerts_waiting_is_degraded(state: RuntimeState) -> None:
    assert verdict(state, running=3, queued=1)[0] == "degraded"
    assert verdict(state, running=3, queued=0)[0] == "healthy"


def test_failing_runtime_dependency_is_degraded(state: RuntimeState) -> None:
    state.record_dependency(DEP_PAGERDUTY, ok=False, detail="HTTP 503")
    status, reasons = verdict(state)
    assert status == "degraded"
    assert reasons == ["dependency pagerduty failing: HTTP 503"]


def test_failing_monitored_service_does_not_degrade_the_runtime(state: RuntimeState) -> None:
    state.record_dependency(service_dependency("api"), ok=False, detail="connection refused")
    assert verdict(state)[0] == "healthy"


def test_hourly_budget_over_90_percent_is_degraded(state: RuntimeState) -> None:
    state.record_tokens(input_tokens=900, output_tokens=0)
    assert state.verdict(running=0, queued=0, limit=3, queue_max=100, budget=1000)[0] == "healthy"
    state.record_tokens(input_tokens=1, output_tokens=0)
    status, reasons = state.verdict(running=0, queued=0, limit=3, queue_max=100, budget=1000)
    assert status == "degraded"
    assert reasons == ["hourly token budget 901/1000 used"]


def test_unhealthy_lists_degraded_reasons_too(state: RuntimeState) -> None:
    state.record_dependency(DEP_PAGERDUTY, ok=False)
    status, reasons = verdict(state, queued=100)
    assert status == "unhealthy"
    assert len(reasons) == 2
