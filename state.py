"""Runtime state: the local source of truth behind `/ops/*`, updated as things happen.

`RuntimeState` owns the golden signals of this process (latency, traffic, errors,
saturation), the webhook/intake/agent counters, token usage (lifetime and a rolling hour),
recent errors and the last-seen status of each dependency. Every `record_*` call also moves
the matching OpenTelemetry instrument (CONTRACT §7), so callers call one thing.

Memory is bounded whatever the traffic: requests land in a ring of `WINDOW_BUCKETS` time
buckets spanning `window_seconds`, each holding counters and a fixed log-scale latency
histogram (`BINS_PER_OCTAVE` bins per doubling from 0.1 ms to ~105 s, so a percentile is
within ~4.5% of the true value); tokens land in a ring of 60 one-minute slots; errors keep at
most `MAX_ERROR_KINDS` kinds, dependencies `MAX_DEPENDENCIES` names, routes `MAX_ROUTES`.

Verdict thresholds (`verdict()`), evaluated over the sliding window:
- unhealthy: 5xx share > 50% (`UNHEALTHY_ERROR_RATE`) with >= 10 requests
  (`MIN_REQUESTS_FOR_ERROR_RATE`), or the intake queue full (queued >= queue_max).
- degraded: 5xx share > 5% (`DEGRADED_ERROR_RATE`) with >= 10 requests; queue > 80% full
  (`DEGRADED_QUEUE_FILL`); every run slot busy with alerts waiting; a runtime dependency
  failing its last check (monitored services, `service:*`, are excluded: their outages are
  what this runtime diagnoses, not a fault of its own); hourly token use > 90% of the budget
  (`DEGRADED_TOKEN_BUDGET_USE`).
- healthy otherwise. Fewer than 10 requests never move the verdict on error rate alone.

Single event loop: plain counters, no locks (nothing awaits between read and update).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import Meter

import telemetry as names

meter = metrics.get_meter(__name__)

WINDOW_BUCKETS = 60
LATENCY_FLOOR_S = 1e-4
BINS_PER_OCTAVE = 8
LATENCY_OCTAVES = 20
LATENCY_BINS = LATENCY_OCTAVES * BINS_PER_OCTAVE + 2  # underflow + log bins + overflow
TOKEN_MINUTES = 60
MAX_ERROR_KINDS = 50
MAX_ERROR_KIND_CHARS = 100
MAX_ERROR_MESSAGE_CHARS = 500
MAX_DEPENDENCIES = 200
MAX_DETAIL_CHARS = 500
MAX_ROUTES = 64
OTHER_ROUTE = "(other)"
_LOG2_FLOOR = math.log2(LATENCY_FLOOR_S)

MIN_REQUESTS_FOR_ERROR_RATE = 10
UNHEALTHY_ERROR_RATE = 0.50
DEGRADED_ERROR_RATE = 0.05
DEGRADED_QUEUE_FILL = 0.80
DEGRADED_TOKEN_BUDGET_USE = 0.90

WEBHOOK_OUTCOMES = tuple(names.WEBHOOK_METRICS)
INTAKE_EVENTS = tuple(names.INTAKE_METRICS)

# Dependency names shared by the callers of `record_dependency` and `/ops/dependencies`.
DEP_LLM = "llm"
DEP_PAGERDUTY = "pagerduty"


def service_dependency(name: str) -> str:
    """Dependency name of a monitored service (its `/ops/*` calls)."""
    return f"service:{name}"


def cloud_dependency(provider: str) -> str:
    """Dependency name of the cloud log/metric API (`gcp`, `aws`)."""
    return f"cloud:{provider}"


def _module_meter() -> Meter:
    return meter


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _latency_bin(seconds: float, _log2: Callable[[float], float] = math.log2) -> int:
    if seconds <= LATENCY_FLOOR_S:
        return 0
    index = int((_log2(seconds) - _LOG2_FLOOR) * BINS_PER_OCTAVE) + 1
    return index if index < LATENCY_BINS else LATENCY_BINS - 1


def _bin_value_s(index: int) -> float:
    """Representative latency of a bin: the geometric middle of its bounds."""
    if index == 0:
        return LATENCY_FLOOR_S
    return LATENCY_FLOOR_S * 2 ** ((index - 0.5) / BINS_PER_OCTAVE)


def percentiles_ms(counts: list[int], quantiles: tuple[float, ...]) -> list[float | None]:
    """Nearest-rank quantiles (in ms) of a latency histogram; None when it is empty."""
    total = sum(counts)
    if total == 0:
        return [None for _ in quantiles]
    ranks = [max(1, math.ceil(q * total)) for q in quantiles]
    results: list[float | None] = []
    seen, index = 0, -1
    for rank in ranks:
        while seen < rank:
            index += 1
            seen += counts[index]
        results.append(round(_bin_value_s(index) * 1000, 3))
    return results


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole > 0 else None


@dataclass(slots=True)
class _Bucket:
    """Requests of one slice of the window."""

    epoch: int = -1
    requests: int = 0
    server_errors: int = 0
    client_errors: int = 0
    latency: list[int] = field(default_factory=lambda: [0] * LATENCY_BINS)

    def reset(self, epoch: int) -> None:
        self.epoch = epoch
        self.requests = self.server_errors = self.client_errors = 0
        self.latency[:] = _ZEROS


_ZEROS = (0,) * LATENCY_BINS


class _RequestWindow:
    """A ring of `WINDOW_BUCKETS` buckets covering the last `window_seconds`."""

    def __init__(self, window_seconds: float) -> None:
        self.width = window_seconds / WINDOW_BUCKETS
        self.buckets = [_Bucket() for _ in range(WINDOW_BUCKETS)]

    def live(self, now: float) -> list[_Bucket]:
        oldest = int(now // self.width) - WINDOW_BUCKETS
        return [b for b in self.buckets if b.epoch > oldest]


class _HourlyTokens:
    """Tokens per minute over the last 60 minutes."""

    def __init__(self) -> None:
        self.minutes = [-1] * TOKEN_MINUTES
        self.tokens = [0] * TOKEN_MINUTES

    def add(self, tokens: int, now: float) -> None:
        minute = int(now // 60)
        slot = minute % TOKEN_MINUTES
        if self.minutes[slot] != minute:
            self.minutes[slot], self.tokens[slot] = minute, 0
        self.tokens[slot] += tokens

    def total(self, now: float) -> int:
        oldest = int(now // 60) - TOKEN_MINUTES
        return sum(t for m, t in zip(self.minutes, self.tokens, strict=True) if m > oldest)


@dataclass(slots=True)
class _ErrorRecord:
    count: int
    last_message: str
    last_seen: datetime


@dataclass(slots=True)
class _DependencyRecord:
    ok: bool
    detail: str | None
    latency_ms: float | None
    last_seen: datetime


class RuntimeState:
    """Counters and windows behind `/ops/*`; each `record_*` also feeds OpenTelemetry.

    `clock` is monotonic seconds (windows, rates, uptime); `wall_clock` stamps `last_seen`.
    `meter` defaults to this module's global-proxy meter; tests pass an SDK meter.
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        window_seconds: float = 300.0,
        wall_clock: Callable[[], datetime] = _utc_now,
        meter: Meter | None = None,
    ) -> None:
        self._clock = clock
        self._wall_clock = wall_clock
        self._started = clock()
        self.window_seconds = window_seconds
        self._window = _RequestWindow(window_seconds)
        self._routes: dict[str, list[int]] = {}
        self._webhooks = dict.fromkeys(WEBHOOK_OUTCOMES, 0)
        self._intake = dict.fromkeys(INTAKE_EVENTS, 0)
        self._runs = {"completed": 0, "failed": 0, "tokens": 0}
        self._run_seconds = {"total": 0.0, "max": 0.0}
        self._tokens = {"input": 0, "output": 0}
        self._hourly = _HourlyTokens()
        self._errors: dict[str, _ErrorRecord] = {}
        self._dependencies: dict[str, _DependencyRecord] = {}
        self._active_source: Callable[[], tuple[int, int]] | None = None
        self._otel = names.Instruments.create(
            meter if meter is not None else _module_meter(), active=self._observe_active
        )

    def uptime_seconds(self) -> float:
        return self._clock() - self._started

    # -- request path: O(1), allocation-free once every bucket and route has been seen --

    def record_request(
        self, *, route: str, status: int, duration_s: float, refused: bool = False
    ) -> None:
        """One HTTP request: window counters, latency histogram, per-route totals.

        `refused`: a 5xx the runtime chose to answer (503 while draining): not an error."""
        # The bucket of `now`, recycled when the ring has come round (runs per request).
        epoch = int(self._clock() // self._window.width)
        bucket = self._window.buckets[epoch % WINDOW_BUCKETS]
        if bucket.epoch != epoch:
            bucket.reset(epoch)
        bucket.requests += 1
        failed = status >= 500 and not refused
        if failed:
            bucket.server_errors += 1
        elif 400 <= status < 500:
            bucket.client_errors += 1
        bucket.latency[_latency_bin(duration_s)] += 1
        counts = self._routes.get(route)
        if counts is None:
            key = route if len(self._routes) < MAX_ROUTES else OTHER_ROUTE
            counts = self._routes.setdefault(key, [0, 0])
        counts[0] += 1
        counts[1] += failed

    # -- events --

    def record_webhook(self, outcome: str, count: int = 1) -> None:
        """`outcome` is one of WEBHOOK_OUTCOMES; anything else is a programming error."""
        if outcome not in self._webhooks:
            raise ValueError(f"unknown webhook outcome {outcome!r}")
        self._webhooks[outcome] += count
        self._otel.webhooks[outcome].add(count)

    def record_intake(self, event: str, count: int = 1) -> None:
        """`event` is one of INTAKE_EVENTS; anything else is a programming error."""
        if event not in self._intake:
            raise ValueError(f"unknown intake event {event!r}")
        self._intake[event] += count
        self._otel.intake[event].add(count)

    def watch_active(self, source: Callable[[], tuple[int, int]]) -> None:
        """Where `incidents.active` and `intake.queue_depth` are read from when exported:
        `source()` returns (running, queued) — intake's own counts."""
        self._active_source = source

    def _observe_active(self) -> tuple[int, int] | None:
        return None if self._active_source is None else self._active_source()

    def record_run(self, *, ok: bool, duration_s: float, tokens: int) -> None:
        """One finished agent run: ok=True counts as completed, False as failed."""
        self._runs["completed" if ok else "failed"] += 1
        self._runs["tokens"] += tokens
        self._run_seconds["total"] += duration_s
        self._run_seconds["max"] = max(self._run_seconds["max"], duration_s)
        (self._otel.runs_completed if ok else self._otel.runs_failed).add(1)
        self._otel.run_duration.record(duration_s)
        self._otel.tokens_per_run.record(tokens)

    def record_tokens(self, *, input_tokens: int, output_tokens: int) -> None:
        """Usage of one LLM turn; feeds the lifetime totals and the rolling hour."""
        self._tokens["input"] += input_tokens
        self._tokens["output"] += output_tokens
        self._hourly.add(input_tokens + output_tokens, self._clock())
        self._otel.tokens_input.add(input_tokens)
        self._otel.tokens_output.add(output_tokens)

    def tokens_last_hour(self) -> int:
        """Tokens used in the last 60 minutes (minute granularity): MAX_TOKENS_PER_HOUR."""
        return self._hourly.total(self._clock())

    def record_error(self, kind: str, message: str) -> None:
        """Count an error by kind; the least recently seen kind goes when there are 50."""
        kind = kind[:MAX_ERROR_KIND_CHARS]
        previous = self._errors.pop(kind, None)
        count = previous.count + 1 if previous else 1
        self._errors[kind] = _ErrorRecord(
            count, message[:MAX_ERROR_MESSAGE_CHARS], self._wall_clock()
        )
        if len(self._errors) > MAX_ERROR_KINDS:
            del self._errors[next(iter(self._errors))]

    def record_dependency(
        self, name: str, *, ok: bool, detail: str | None = None, latency_ms: float | None = None
    ) -> None:
        """Last-seen status of a dependency (see DEP_* and *_dependency() for names)."""
        self._dependencies.pop(name, None)
        detail = detail[:MAX_DETAIL_CHARS] if detail else detail
        self._dependencies[name] = _DependencyRecord(ok, detail, latency_ms, self._wall_clock())
        if len(self._dependencies) > MAX_DEPENDENCIES:
            del self._dependencies[next(iter(self._dependencies))]

    # -- readers --

    def metrics(
        self, *, running: int, queued: int, limit: int, queue_max: int = 0
    ) -> dict[str, Any]:
        """Everything `/ops/metrics` shows, as plain JSON-ready values."""
        return {
            "window_seconds": self.window_seconds,
            "uptime_seconds": round(self.uptime_seconds(), 3),
            "requests": self._request_summary(),
            "saturation": _saturation(running, queued, limit, queue_max),
            "webhooks": dict(self._webhooks),
            "intake": dict(self._intake),
            "agent_runs": self._run_summary(),
            "token_usage": self._token_summary(),
        }

    def errors(self) -> list[dict[str, Any]]:
        """Recent errors, most recently seen first."""
        return [
            {
                "kind": kind,
                "count": r.count,
                "last_message": r.last_message,
                "last_seen": r.last_seen.isoformat(),
            }
            for kind, r in reversed(self._errors.items())
        ]

    def dependencies(self) -> dict[str, dict[str, Any]]:
        """Last-seen status of every dependency ever recorded, by name."""
        return {
            name: {
                "ok": r.ok,
                "detail": r.detail,
                "latency_ms": r.latency_ms,
                "last_seen": r.last_seen.isoformat(),
            }
            for name, r in self._dependencies.items()
        }

    def verdict(
        self, *, running: int, queued: int, limit: int, queue_max: int, budget: int = 0
    ) -> tuple[str, list[str]]:
        """("healthy" | "degraded" | "unhealthy", reasons), per the module's thresholds."""
        unhealthy, degraded = self._error_reasons()
        if queue_max > 0 and queued >= queue_max:
            unhealthy.append(f"intake queue full ({queued}/{queue_max})")
        degraded += _load_reasons(running, queued, limit, queue_max)
        degraded += self._dependency_reasons() + self._budget_reasons(budget)
        if unhealthy:
            return "unhealthy", unhealthy + degraded
        return ("degraded", degraded) if degraded else ("healthy", [])

    # -- helpers --

    def _window_totals(self) -> tuple[int, int, int, list[int]]:
        requests = server = client = 0
        latency = [0] * LATENCY_BINS
        for bucket in self._window.live(self._clock()):
            requests += bucket.requests
            server += bucket.server_errors
            client += bucket.client_errors
            latency = [a + b for a, b in zip(latency, bucket.latency, strict=True)]
        return requests, server, client, latency

    def _request_summary(self) -> dict[str, Any]:
        requests, server, client, latency = self._window_totals()
        p50, p95, p99 = percentiles_ms(latency, (0.50, 0.95, 0.99))
        span = min(self.window_seconds, max(self.uptime_seconds(), 1.0))
        return {
            "window_total": requests,
            "lifetime_total": sum(c[0] for c in self._routes.values()),
            "rate_per_second": round(requests / span, 4),
            "error_rate": _ratio(server, requests),
            "client_error_rate": _ratio(client, requests),
            "latency_ms": {"p50": p50, "p95": p95, "p99": p99},
            "by_route": {
                r: {"requests": c[0], "server_errors": c[1]} for r, c in self._routes.items()
            },
        }

    def _run_summary(self) -> dict[str, Any]:
        runs = self._runs["completed"] + self._runs["failed"]
        return {
            "completed": self._runs["completed"],
            "failed": self._runs["failed"],
            "average_duration_s": _ratio(self._run_seconds["total"], runs),
            "max_duration_s": round(self._run_seconds["max"], 4),
        }

    def _token_summary(self) -> dict[str, Any]:
        runs = self._runs["completed"] + self._runs["failed"]
        total = self._tokens["input"] + self._tokens["output"]
        return {
            **self._tokens,
            "total": total,
            "last_hour": self.tokens_last_hour(),
            "per_incident_average": _ratio(self._runs["tokens"], runs),
        }

    def _error_reasons(self) -> tuple[list[str], list[str]]:
        requests, server, _client, _latency = self._window_totals()
        if requests < MIN_REQUESTS_FOR_ERROR_RATE:
            return [], []
        rate = server / requests
        text = f"5xx rate {rate:.0%} of {requests} requests in the last {self.window_seconds:g}s"
        if rate > UNHEALTHY_ERROR_RATE:
            return [text], []
        return [], [text] if rate > DEGRADED_ERROR_RATE else []

    def _dependency_reasons(self) -> list[str]:
        return [
            f"dependency {name} failing: {r.detail or 'no detail'}"
            for name, r in self._dependencies.items()
            if not r.ok and not name.startswith("service:")
        ]

    def _budget_reasons(self, budget: int) -> list[str]:
        used = self.tokens_last_hour()
        if budget <= 0 or used <= budget * DEGRADED_TOKEN_BUDGET_USE:
            return []
        return [f"hourly token budget {used}/{budget} used"]


def _saturation(running: int, queued: int, limit: int, queue_max: int) -> dict[str, Any]:
    return {
        "running": running,
        "limit": limit,
        "ratio": _ratio(running, limit),
        "queue_depth": queued,
        "queue_max": queue_max,
        "queue_fill_ratio": _ratio(queued, queue_max),
    }


def _load_reasons(running: int, queued: int, limit: int, queue_max: int) -> list[str]:
    reasons = []
    if queue_max > 0 and DEGRADED_QUEUE_FILL * queue_max < queued < queue_max:
        reasons.append(f"intake queue {queued}/{queue_max} more than 80% full")
    if limit > 0 and running >= limit and queued > 0:
        reasons.append(f"all {limit} run slots busy with {queued} alerts waiting")
    return reasons
