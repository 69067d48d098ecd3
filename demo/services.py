"""The two demo services, each implementing the `/ops/*` contract with an injected fault.

- `checkout` leaks database connections: every observation of the service (any GET
  `/ops/*`, standing in for a burst of customer traffic) leaks two more connections until
  the pool is exhausted; then requests time out waiting for a connection
  (`PoolTimeoutError`), so error rate and p99 latency climb. `POST /ops/restart` (or
  `/ops/pool/reset`) returns the leaked connections and clears the fault.
- `payments` cannot reach its database (`/ops/health` shows `database: failing`). Its
  remediation endpoints answer 200 but change nothing: only a human can fix the database.

State changes only in response to requests, never on a timer, so a run is deterministic.
GET endpoints need no auth; POST endpoints need `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

Body = dict[str, Any]
REQUESTS_PER_OBSERVATION = 60


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class OpsService:
    """What both demo services share: routing, auth, and a log of the writes received."""

    name = "service"
    version = "1.0.0"

    def __init__(self, *, token: str) -> None:
        self._token = token
        self.posts: list[str] = []
        self.observations = 0

    def reads(self) -> dict[str, Callable[[], Body]]:
        return {
            "status": self.status,
            "health": self.health,
            "metrics": self.metrics,
            "errors": self.errors,
            "dependencies": self.dependencies,
            "config": self.config,
        }

    def actions(self) -> dict[str, Callable[[], Body]]:
        raise NotImplementedError

    def observe(self) -> None:
        """One burst of simulated traffic; subclasses move their fault forward here."""
        self.observations += 1

    def status(self) -> Body:
        raise NotImplementedError

    def health(self) -> Body:
        raise NotImplementedError

    def metrics(self) -> Body:
        raise NotImplementedError

    def errors(self) -> Body:
        raise NotImplementedError

    def dependencies(self) -> Body:
        raise NotImplementedError

    def config(self) -> Body:
        raise NotImplementedError

    def app(self) -> Starlette:
        routes = [
            Route(f"/ops/{path}", self._reader(read), methods=["GET"])
            for path, read in self.reads().items()
        ]
        routes += [
            Route(f"/ops/{path}", self._writer(path, act), methods=["POST"])
            for path, act in self.actions().items()
        ]
        return Starlette(routes=routes)

    def _reader(self, read: Callable[[], Body]) -> Callable[[Request], Any]:
        async def endpoint(_request: Request) -> JSONResponse:
            self.observe()
            return JSONResponse(read())

        return endpoint

    def _writer(self, path: str, act: Callable[[], Body]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> JSONResponse:
            if not self._authorized(request.headers.get("authorization", "")):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
            self.posts.append(f"/ops/{path}")
            return JSONResponse({"ok": True, "action": path, **act()})

        return endpoint

    def _authorized(self, header: str) -> bool:
        return hmac.compare_digest(header.encode(), f"Bearer {self._token}".encode())


class CheckoutService(OpsService):
    """A checkout API whose DB connection pool leaks until it is exhausted."""

    name = "checkout"
    version = "2.14.1"
    pool_max = 20
    leak_per_observation = 2

    def __init__(self, *, token: str) -> None:
        super().__init__(token=token)
        self.leaking = True
        self.pool_in_use = 16
        self.pool_history = [8, 10, 12, 14, 16]
        self.pool_timeouts = 38
        self.recent_timeouts = 6
        self.replicas = 3
        self.restarts = 0

    @property
    def fault_active(self) -> bool:
        return self.leaking or self.pool_in_use >= self.pool_max

    @property
    def utilization(self) -> float:
        return self.pool_in_use / self.pool_max

    @property
    def error_rate(self) -> float:
        return round(0.002 + self.recent_timeouts / REQUESTS_PER_OBSERVATION, 3)

    @property
    def p99_ms(self) -> int:
        pressure = max(0.0, (self.utilization - 0.6) / 0.4)
        return round(140 + 4860 * pressure**2)

    def observe(self) -> None:
        super().observe()
        if self.leaking:
            self.pool_in_use = min(self.pool_max, self.pool_in_use + self.leak_per_observation)
        self.recent_timeouts = self._timeouts_per_observation()
        self.pool_timeouts += self.recent_timeouts
        self.pool_history = [*self.pool_history, self.pool_in_use][-10:]

    def _timeouts_per_observation(self) -> int:
        if self.pool_in_use >= self.pool_max:
            return 11
        return 3 if self.utilization >= 0.9 else 0

    def _verdict(self) -> str:
        if self.error_rate >= 0.15:
            return "unhealthy"
        return "degraded" if self.error_rate >= 0.01 or self.utilization >= 0.8 else "healthy"

    def status(self) -> Body:
        return {
            "service": self.name,
            "status": self._verdict(),
            "version": self.version,
            "replicas": self.replicas,
            "golden_signals": {
                "latency_p99_ms": self.p99_ms,
                "requests_per_second": 48.0,
                "error_rate": self.error_rate,
                "saturation": {"db_pool": round(self.utilization, 2)},
            },
        }

    def health(self) -> Body:
        pool_state = "exhausted" if self.pool_in_use >= self.pool_max else "ok"
        return {
            "status": "degraded" if pool_state != "ok" else "healthy",
            "checks": {
                "database": {"status": "ok", "latency_ms": 3},
                "db_pool": {
                    "status": pool_state,
                    "in_use": self.pool_in_use,
                    "max": self.pool_max,
                },
                "payments_api": {"status": "ok", "latency_ms": 41},
            },
        }

    def metrics(self) -> Body:
        p99 = self.p99_ms
        return {
            "latency_ms": {"p50": 38, "p95": round(p99 * 0.7), "p99": p99},
            "request_rate_rps": 48.0,
            "error_rate": self.error_rate,
            "saturation": {"cpu": 0.31, "memory": 0.44, "db_pool": round(self.utilization, 2)},
            "db_pool": {
                "in_use": self.pool_in_use,
                "idle": self.pool_max - self.pool_in_use,
                "max": self.pool_max,
                "waiting_requests": 9 if self.pool_in_use >= self.pool_max else 0,
                "in_use_history": list(self.pool_history),
            },
        }

    def errors(self) -> Body:
        if not self.pool_timeouts:
            return {"errors": []}
        message = (
            f"QueuePool limit of size {self.pool_max} overflow 0 reached, "
            "connection timed out, timeout 5.00"
        )
        entry = {"type": "PoolTimeoutError", "count": self.pool_timeouts, "last_message": message}
        return {"errors": [{**entry, "last_seen": _now()}]}

    def dependencies(self) -> Body:
        return {
            "dependencies": [
                {"name": "checkout-db", "kind": "postgres", "status": "healthy", "latency_ms": 3},
                {"name": "payments", "kind": "http", "status": "healthy", "latency_ms": 41},
            ]
        }

    def config(self) -> Body:
        return {
            "service": self.name,
            "version": self.version,
            "db_pool": {"max_size": self.pool_max, "timeout_s": 5, "recycle_s": 1800},
            "log_level": "INFO",
        }

    def actions(self) -> dict[str, Callable[[], Body]]:
        return {
            "restart": self._restart,
            "pool/reset": self._restart,
            "cache/clear": lambda: {"cleared_entries": 1204},
            "scale": lambda: {"replicas": self.replicas},
        }

    def _restart(self) -> Body:
        before = self.pool_in_use
        self.restarts += 1
        self.leaking = False  # the leaked connections are returned; the bug needs a code fix
        self.pool_in_use = 3
        self.recent_timeouts = 0
        return {"pool_in_use_before": before, "pool_in_use_after": self.pool_in_use}


class PaymentsService(OpsService):
    """A payments API whose database is down: nothing in its own API can fix that."""

    name = "payments"
    version = "5.3.0"

    def __init__(self, *, token: str) -> None:
        super().__init__(token=token)
        self.database_up = False
        self.db_failures = 212

    def observe(self) -> None:
        super().observe()
        if not self.database_up:
            self.db_failures += 55

    def status(self) -> Body:
        return {
            "service": self.name,
            "status": "healthy" if self.database_up else "unhealthy",
            "version": self.version,
            "golden_signals": {
                "latency_p99_ms": 180 if self.database_up else 3020,
                "requests_per_second": 61.0,
                "error_rate": 0.002 if self.database_up else 0.92,
                "saturation": {"workers": 0.97 if not self.database_up else 0.3},
            },
        }

    def health(self) -> Body:
        database = {"status": "ok", "latency_ms": 4}
        if not self.database_up:
            database = {
                "status": "failing",
                "error": "connection refused: payments-db.internal:5432",
                "consecutive_failures": self.db_failures,
            }
        return {
            "status": "healthy" if self.database_up else "unhealthy",
            "checks": {
                "database": database,
                "card_network": {"status": "ok", "latency_ms": 88},
                "cache": {"status": "ok", "latency_ms": 1},
            },
        }

    def metrics(self) -> Body:
        return {
            "latency_ms": {"p50": 3000, "p95": 3010, "p99": 3020},
            "request_rate_rps": 61.0,
            "error_rate": 0.92,
            "saturation": {"workers": 0.97},
        }

    def errors(self) -> Body:
        return {
            "errors": [
                {
                    "type": "DatabaseConnectionError",
                    "count": self.db_failures,
                    "last_message": "could not connect to payments-db.internal:5432: "
                    "Connection refused",
                    "last_seen": _now(),
                }
            ]
        }

    def dependencies(self) -> Body:
        db_status = "healthy" if self.database_up else "failing"
        return {
            "dependencies": [
                {"name": "payments-db", "kind": "postgres", "status": db_status},
                {"name": "card-network", "kind": "http", "status": "healthy"},
            ]
        }

    def config(self) -> Body:
        return {
            "service": self.name,
            "version": self.version,
            "database": {"host": "payments-db.internal", "port": 5432, "connect_timeout_s": 3},
        }

    def actions(self) -> dict[str, Callable[[], Body]]:
        note = {"note": "restarted, but the database is still unreachable"}
        return {"restart": lambda: note, "pool/reset": lambda: note}
