"""STATE_BACKEND=postgres under load: the runtime on a real, durable PostgreSQL.

A PostgreSQL server is started for the run (bench/_postgres.py: fsync and synchronous_commit
on, as in production); the runtime is the real process (`python -m main`, one worker, access
log on), configured through its environment with STATE_BACKEND=postgres and four registered
services, MAX_CONCURRENT_ALERTS=3. The fake LLM, PagerDuty and the service run in this
process, so the fake LLM's arrival times and the load generator's share one clock. Measured,
in this order:

1. Run start: 150 `POST /webhook/generic` for new incidents, one every 40 ms over the four
   services, the fake LLM answering at once, so a slot is always free (checked afterwards
   from the stored timelines). Delay from the benchmark reading the 202 to the fake LLM
   receiving that incident's first request (claim, first checkpoint, prompt, request); the
   first 10 are warm-up. Target p99 <= 100 ms.
2. Webhooks against `/health` on the same server, closed loop over 64 keep-alive connections
   (bench/_load.py), 1 s warm-up each, then 5 s phases: `GET /health`, `POST /webhook/generic`
   for new incidents (each queued; the fake LLM answers runs after 1 s, like a model, so runs
   go on), then repeats of 1,000 of those incidents (each deduplicated). Targets:
   webhook/health throughput >= 0.3 and p99 of an acknowledged webhook <= 100 ms, for both.
3. Intake alone, in this process: `PgIntake.submit_all` on a fresh database per mode (one
   alert per call from 1 and from 64 callers, batches of 100, repeats from 64 callers), runs
   blocked once the limit is reached, 3 s each; the in-memory intake (`MemoryIntake`) for
   comparison. No target.

The CPU of the runtime, of this process, of the PostgreSQL server (the postmaster and its
backends) and of everything else on the machine is reported per phase: on two cores it shows
which one is the bottleneck, and whether other work on a shared host skewed the run.
Nothing fails on speed: targets are printed as MET / NOT MET.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import re
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from agent.resume import restore, saved
from agent.transcript import Transcript
from bench import _load
from bench._common import (
    PYTHON,
    TOKEN,
    environment,
    met,
    percentile,
    process,
    settings_values,
    write_result,
)
from bench._postgres import PostgresServer, postgres
from demo.simulators.llm import FakeLLM, Step, say
from demo.simulators.ops_service import make_ops_service
from demo.simulators.pagerduty import make_fake_pagerduty
from demo.simulators.server import free_port, serve
from intake import AlertRecord, Ending, Intake, Limits
from intake.pg.service import PgIntake
from intake.service import IntakeService, MemoryIntake
from models import Alert, AlertStatus, Priority, Provider

SERVICES = ("checkout", "payments", "search", "inventory")
CONCURRENT_RUNS = 3  # MAX_CONCURRENT_ALERTS (the default)
CONCURRENCY = 64
SECONDS = 5.0
WARMUP_SECONDS = 1.0
LLM_DELAY_SECONDS = 1.0
START_ALERTS = 150
START_WARMUP = 10
START_SPACING_SECONDS = 0.04
REPEATED_INCIDENTS = 1000
INTAKE_SECONDS = 3.0
INTAKE_ALERTS = 50_000
INTAKE_CALLERS = 64
BATCH = 100
RATIO_TARGET = 0.3
P99_TARGET_MS = 100.0
START_P99_TARGET_MS = 100.0
INCIDENT = re.compile(r"Incident id: (generic:[A-Za-z0-9_-]+)")


# ---------------------------------------------------------------- the fake LLM


class RunStarts:
    """The fake LLM's policy: notes when each incident's first request arrives; answers
    run-start incidents (`generic:s...`) at once and load incidents after LLM_DELAY_SECONDS."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.arrived = asyncio.Event()

    def __call__(self, messages: list[dict[str, Any]]) -> Step:
        now = time.perf_counter()
        found = INCIDENT.search(str(messages[1].get("content"))) if len(messages) > 1 else None
        incident = found.group(1) if found else "?"
        self.first.setdefault(incident, now)
        self.arrived.set()
        if incident.startswith("generic:s"):
            return say("Diagnosis complete. No further action.")
        answer = asyncio.Event()
        asyncio.get_running_loop().call_later(LLM_DELAY_SECONDS, answer.set)
        return say("Diagnosis complete. No further action.", hold=answer)

    async def wait_for(self, incidents: Sequence[str], *, seconds: float) -> None:
        async with asyncio.timeout(seconds):
            while any(i not in self.first for i in incidents):
                self.arrived.clear()
                await self.arrived.wait()


@contextlib.asynccontextmanager
async def outside_world(starts: RunStarts) -> AsyncIterator[dict[str, str]]:
    """The fake LLM, PagerDuty and monitored service, served from this process."""
    pagerduty_app, _ = make_fake_pagerduty()
    service_app, _ = make_ops_service(name="checkout", token=TOKEN)
    async with (
        serve(FakeLLM(policy=starts).app()) as llm,
        serve(pagerduty_app) as pagerduty,
        serve(service_app) as service,
    ):
        yield {"llm": llm, "pagerduty": pagerduty, "service": service}


# ---------------------------------------------------------------- the runtime


def runtime_values(urls: dict[str, str], workdir: Path, database_url: str) -> dict[str, Any]:
    return settings_values(
        registry=",".join(f"{name}|{urls['service']}|false" for name in SERVICES),
        incidents_dir=workdir / "incidents",
        llm_api_base_url=urls["llm"],
        pagerduty_events_url=f"{urls['pagerduty']}/v2/enqueue",
        pagerduty_api_url=urls["pagerduty"],
        state_backend="postgres",
        database_url=database_url,
        max_concurrent_alerts=CONCURRENT_RUNS,
        max_queue_size=1_000_000,
        shutdown_grace_seconds=1,
    )


@contextlib.contextmanager
def runtime(values: dict[str, Any], workdir: Path) -> Iterator[tuple[int, int]]:
    """`python -m main` on a free port; (pid, port). Stopped (SIGTERM, SIGKILL) on exit."""
    port = free_port()
    args = [PYTHON, "-m", "main", "--host", "127.0.0.1", "--port", str(port)]
    with process(args, env=environment(values), log=workdir / "runtime.log") as proc:
        yield proc.pid, port


async def wait_serving(port: int) -> None:
    """Until `GET /health` answers 200: a bounded poll (a process offers no event)."""
    for _ in range(1200):
        if await _health_ok(port):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the runtime did not start serving within 60 s")


async def _health_ok(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        return False
    try:
        writer.write(_load.get("/health"))
        status, _ = await _load._read_response(reader)
        return status == 200
    except (OSError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()


# ---------------------------------------------------------------- requests


def webhook(incident: str, service: str) -> bytes:
    body = {
        "incident_id": incident,
        "summary": f"p99 latency above 2 s on {service} for 5 minutes",
        "service": service,
        "severity": "critical",
        "labels": {"team": "sre", "env": "prod", "alertname": "HighLatency"},
        "url": f"https://monitoring.example.com/incidents/{incident}",
    }
    encoded = json.dumps(body, separators=(",", ":")).encode()
    return _load.post_json("/webhook/generic", encoded, {"Authorization": f"Bearer {TOKEN}"})


def new_incidents(prefix: str) -> _load.RequestFactory:
    numbers = itertools.count()

    def make() -> bytes:
        n = next(numbers)
        return webhook(f"{prefix}{n:08d}", SERVICES[n % len(SERVICES)])

    return make


def repeats(prefix: str, count: int) -> _load.RequestFactory:
    """Repeats of the first `count` incidents `new_incidents(prefix)` made."""
    requests = [webhook(f"{prefix}{n:08d}", SERVICES[n % len(SERVICES)]) for n in range(count)]
    cycle = itertools.cycle(requests)
    return lambda: next(cycle)


# ---------------------------------------------------------------- 1. run start


async def run_starts(port: int, starts: RunStarts, database_url: str) -> dict[str, Any]:
    """202 -> first LLM request, with a slot free for every alert."""
    acked: dict[str, float] = {}
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for n in range(START_ALERTS):
            incident = f"s{n:08d}"
            writer.write(webhook(incident, SERVICES[n % len(SERVICES)]))
            status, body = await _load._read_response(reader)
            acked[f"generic:{incident}"] = time.perf_counter()
            if status != 202 or b'"queued"' not in body:
                raise RuntimeError(f"webhook not queued: {status} {body[:200]!r}")
            await asyncio.sleep(START_SPACING_SECONDS)
    finally:
        writer.close()
    await starts.wait_for(list(acked), seconds=30)
    delays = [starts.first[i] - at for i, at in list(acked.items())[START_WARMUP:]]
    return {
        "alerts": START_ALERTS - START_WARMUP,
        "spacing_ms": START_SPACING_SECONDS * 1000,
        "p50_ms": round(percentile(delays, 50) * 1000, 2),
        "p99_ms": round(percentile(delays, 99) * 1000, 2),
        "max_ms": round(max(delays) * 1000, 2),
        "queued_without_a_free_slot": await queued_without_a_free_slot(database_url),
    }


async def queued_without_a_free_slot(database_url: str) -> int:
    """From the stored timelines: alerts queued while MAX_CONCURRENT_ALERTS runs were in
    progress or while their service had one (0: every alert found a slot free)."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT service, timeline FROM occurrences")
        rows = await cursor.fetchall()
    spans = []  # (service, queued at, run started, run ended)
    for service, steps in rows:
        running = [at for at, status, _ in steps if status == AlertStatus.RUNNING.value]
        ended = steps[-1][0] if steps[-1][1] != AlertStatus.RUNNING.value else float("inf")
        spans.append((service, steps[0][0], running[0] if running else ended, ended))
    blocked = 0
    for service, queued, _, _ in spans:
        busy = [s for s, _, start, end in spans if start <= queued < end]
        blocked += len(busy) >= CONCURRENT_RUNS or service in busy
    return blocked


# ---------------------------------------------------------------- 2. webhooks against /health


def postgres_cpu(server: PostgresServer) -> float:
    """CPU seconds of the postmaster and its children (backends, WAL writer, ...)."""
    postmaster = int((server.data / "postmaster.pid").read_text().split()[0])
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster or int(stat.parent.name) == postmaster:
                total += int(fields[11]) + int(fields[12])
    return total / 100  # clock ticks (USER_HZ, 100 on Linux)


def host_cpu() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat)."""
    ticks = [int(t) for t in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(ticks) - ticks[3] - ticks[4]) / 100  # less idle and iowait


async def phase(
    name: str, make: _load.RequestFactory, expect: bytes | None, ctx: dict[str, Any]
) -> tuple[_load.Phase, dict[str, float]]:
    """A closed-loop phase of CONCURRENCY connections; the phase, and the CPU (cores) of
    PostgreSQL and of everything else on the machine (other work skews a run: it shows)."""
    pg0, host0 = postgres_cpu(ctx["server"]), host_cpu()
    measured = await _load.run_phase(
        name,
        port=ctx["port"],
        make=make,
        concurrency=CONCURRENCY,
        seconds=ctx["seconds"],
        server_pid=ctx["pid"],
        expect=expect,
    )
    pg = postgres_cpu(ctx["server"]) - pg0
    other = host_cpu() - host0 - pg - measured.server_cpu - measured.client_cpu
    return measured, {
        "postgres_cpu_cores": round(pg / measured.seconds, 2),
        "other_cpu_cores": round(max(0.0, other) / measured.seconds, 2),
    }


def phase_summary(measured: _load.Phase, cpu: dict[str, float]) -> dict[str, Any]:
    return {**measured.summary(), **cpu}


async def load(pid: int, port: int, server: PostgresServer) -> dict[str, Any]:
    ctx = {"port": port, "pid": pid, "server": server, "seconds": WARMUP_SECONDS}
    health = _load.get("/health")
    await phase("warmup-webhook", new_incidents("w"), None, ctx)
    ctx["seconds"] = SECONDS
    results = {}
    for name, make, expect in (
        ("health", lambda: health, b'"ok"'),
        ("webhook_new", new_incidents("n"), b'"queued"'),
        ("webhook_repeat", repeats("n", REPEATED_INCIDENTS), b'"deduplicated"'),
    ):
        results[name] = phase_summary(*await phase(name, make, expect, ctx))
    return results


# ---------------------------------------------------------------- 3. intake alone


async def blocked(_record: AlertRecord) -> AlertStatus:
    await asyncio.Event().wait()  # runs hold their slots: only the submit path is measured
    return AlertStatus.RESOLVED


async def no_op(_record: AlertRecord, _ending: Ending) -> None:
    return None


def intake_alerts() -> list[Alert]:
    template = Alert(
        incident_id="generic:template",
        provider=Provider.GENERIC,
        service=SERVICES[0],
        priority=Priority.P2,
        summary="p99 latency above 2 s for 5 minutes",
        labels={"team": "sre", "env": "prod"},
    )
    return [
        template.model_copy(update={"incident_id": f"generic:i{n:08d}", "service": SERVICES[n % 4]})
        for n in range(INTAKE_ALERTS)
    ]


def limits() -> Limits:
    return Limits(concurrency=CONCURRENT_RUNS, queue_size=10 * INTAKE_ALERTS)


def pg_intake(database_url: str) -> PgIntake:
    return PgIntake(
        conninfo=database_url,
        runner=blocked,
        finalize=no_op,
        limits=limits(),
        lease_seconds=30,
        restore=restore,
        saved=saved,
        load_transcript=Transcript.load,
    )


def memory_intake() -> MemoryIntake:
    return MemoryIntake(Intake(runner=blocked, finalize=no_op, limits=limits()), lambda _: None)


async def submit_for(
    intake: IntakeService,
    alerts: list[Alert],
    *,
    batch: int,
    callers: int,
    expect: AlertStatus = AlertStatus.QUEUED,
    server: PostgresServer | None = None,
) -> dict[str, Any]:
    """`submit_all` calls of `batch` alerts from `callers` concurrent callers, until the
    alerts or INTAKE_SECONDS run out; with the CPU each alert cost this process and the
    PostgreSQL `server`, and what the rest of the machine used meanwhile."""
    chunks = iter([alerts[i : i + batch] for i in range(0, len(alerts), batch)])
    deadline = time.perf_counter() + INTAKE_SECONDS
    done, unexpected = [0], [0]

    async def caller() -> None:
        for chunk in chunks:
            outcomes = await intake.submit_all(chunk, trace_id="bench")
            unexpected[0] += sum(o.status is not expect for o in outcomes)
            done[0] += len(chunk)
            if time.perf_counter() > deadline:
                return

    pg = (lambda: postgres_cpu(server)) if server is not None else (lambda: 0.0)
    cpu0, pg0, host0 = time.process_time(), pg(), host_cpu()
    started = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    seconds = time.perf_counter() - started
    cpu, pg_cpu = time.process_time() - cpu0, pg() - pg0
    other = host_cpu() - host0 - cpu - pg_cpu
    return {
        "batch": batch,
        "callers": callers,
        "alerts": done[0],
        "seconds": round(seconds, 3),
        "alerts_per_s": round(done[0] / seconds),
        "cpu_us_per_alert": round(cpu / done[0] * 1e6, 1),
        "postgres_cpu_us_per_alert": round(pg_cpu / done[0] * 1e6, 1),
        "other_cpu_cores": round(max(0.0, other) / seconds, 2),
        "outcome": expect.value,
        "unexpected_outcomes": unexpected[0],
    }


async def pg_rate(
    server: PostgresServer, alerts: list[Alert], *, batch: int, callers: int, repeat: bool
) -> dict[str, Any]:
    """On a fresh database; `repeat`: the alerts are queued first, then sent again (each
    deduplicated: no queue lock, no insert)."""
    async with pg_intake(await asyncio.to_thread(server.create_database)) as intake:
        if repeat:
            for start in range(0, len(alerts), BATCH):
                await intake.submit_all(alerts[start : start + BATCH], trace_id="bench")
            alerts = alerts * (INTAKE_ALERTS // len(alerts))
        expect = AlertStatus.DEDUPLICATED if repeat else AlertStatus.QUEUED
        return await submit_for(
            intake, alerts, batch=batch, callers=callers, expect=expect, server=server
        )


async def intake_rates(server: PostgresServer) -> dict[str, Any]:
    alerts = intake_alerts()
    many = f"{INTAKE_CALLERS}_callers"
    pg = {
        "one_per_call": await pg_rate(server, alerts, batch=1, callers=1, repeat=False),
        f"one_per_call_{many}": await pg_rate(
            server, alerts, batch=1, callers=INTAKE_CALLERS, repeat=False
        ),
        f"batch_{BATCH}": await pg_rate(server, alerts, batch=BATCH, callers=1, repeat=False),
        f"repeats_one_per_call_{many}": await pg_rate(
            server, alerts[:REPEATED_INCIDENTS], batch=1, callers=INTAKE_CALLERS, repeat=True
        ),
    }
    memory = {}
    for name, batch in (("one_per_call", 1), (f"batch_{BATCH}", BATCH)):
        async with memory_intake() as intake:
            memory[name] = await submit_for(intake, alerts, batch=batch, callers=1)
    return {"postgres": pg, "memory": memory}


async def commit_ms(database_url: str, count: int = 200) -> float:
    """One single-row INSERT committed, as this disk makes it (the floor of a webhook)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE bench_commit_durable (n integer)")
        started = time.perf_counter()
        for n in range(count):
            await conn.execute("INSERT INTO bench_commit_durable VALUES (%s)", (n,))
        return round((time.perf_counter() - started) / count * 1000, 3)


# ---------------------------------------------------------------- main


async def measure(server: PostgresServer, workdir: Path) -> dict[str, Any]:
    database_url = await asyncio.to_thread(server.create_database)
    starts = RunStarts()
    async with outside_world(starts) as urls:
        with runtime(runtime_values(urls, workdir, database_url), workdir) as (pid, port):
            await wait_serving(port)
            await _load.run_phase(
                "warmup-health",
                port=port,
                make=lambda: _load.get("/health"),
                concurrency=CONCURRENCY,
                seconds=WARMUP_SECONDS,
                server_pid=pid,
            )
            run_start = await run_starts(port, starts, database_url)
            phases = await load(pid, port, server)
    log = (workdir / "runtime.log").read_text(errors="replace")
    errors = log.count('"level": "ERROR"') + log.count('"levelname": "ERROR"')
    return {
        "postgres": await asyncio.to_thread(server.settings),
        "single_row_commit_ms": await commit_ms(await asyncio.to_thread(server.create_database)),
        "run_start": run_start,
        "phases": phases,
        "runtime_error_log_lines": errors,
        "intake": await intake_rates(server),
    }


def ratios(phases: dict[str, Any]) -> dict[str, float]:
    health = phases["health"]["req_per_s"]
    return {
        kind: round(phases[f"webhook_{kind}"]["req_per_s"] / health, 3) if health else 0.0
        for kind in ("new", "repeat")
    }


def verdicts(result: dict[str, Any]) -> dict[str, bool]:
    phases = result["phases"]
    ok = {}
    for kind in ("new", "repeat"):
        webhook_phase = phases[f"webhook_{kind}"]
        ok[f"{kind}: ratio>=0.3"] = result["ratio_to_health"][kind] >= RATIO_TARGET
        ok[f"{kind}: p99<=100ms at 64"] = webhook_phase["p99_ms"] <= P99_TARGET_MS
        ok[f"{kind}: all 202"] = (
            webhook_phase["statuses"] == {"202": webhook_phase["requests"]}
            and not webhook_phase["unexpected_bodies"]
        )
    ok["run start p99<=100ms"] = result["run_start"]["p99_ms"] <= START_P99_TARGET_MS
    ok["a slot was free"] = result["run_start"]["queued_without_a_free_slot"] == 0
    return ok


def report(result: dict[str, Any], path: Path) -> str:
    phases, start, ok = result["phases"], result["run_start"], result["targets"]
    new, repeat, health = phases["webhook_new"], phases["webhook_repeat"], phases["health"]
    ratio = result["ratio_to_health"]
    pg, memory = result["intake"]["postgres"], result["intake"]["memory"]
    many = f"one_per_call_{INTAKE_CALLERS}_callers"
    return (
        f"postgres_load: health {health['req_per_s']:,.0f}/s | webhook new "
        f"{new['req_per_s']:,.0f}/s ratio {ratio['new']:.2f} ({met(ok['new: ratio>=0.3'])}) "
        f"p99 {new['p99_ms']:.1f} ms ({met(ok['new: p99<=100ms at 64'])}) | repeat "
        f"{repeat['req_per_s']:,.0f}/s ratio {ratio['repeat']:.2f} "
        f"({met(ok['repeat: ratio>=0.3'])}) p99 {repeat['p99_ms']:.1f} ms "
        f"({met(ok['repeat: p99<=100ms at 64'])}) | 202->run start p50 {start['p50_ms']:.1f} "
        f"p99 {start['p99_ms']:.1f} ms ({met(ok['run start p99<=100ms'])}) | intake alerts/s: "
        f"pg {pg['one_per_call']['alerts_per_s']:,} (x{INTAKE_CALLERS} "
        f"{pg[many]['alerts_per_s']:,}, batch {BATCH} {pg[f'batch_{BATCH}']['alerts_per_s']:,}, "
        f"repeats x{INTAKE_CALLERS} {pg[f'repeats_{many}']['alerts_per_s']:,}), memory "
        f"{memory['one_per_call']['alerts_per_s']:,} | all 202: "
        f"{ok['new: all 202'] and ok['repeat: all 202']} | {result['wall_seconds']:.0f} s "
        f"-> {path.relative_to(path.parents[2])}"
    )


def _exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> None:
    # SIGTERM unwinds like Ctrl-C, so the runtime and the PostgreSQL server are stopped.
    signal.signal(signal.SIGTERM, _exit)
    # At the end of each intake mode its blocked runs are handed back: expected, not news.
    logging.getLogger("intake.pg.service").setLevel(logging.ERROR)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="sre-bench-pg-") as tmp, postgres() as server:
        result = asyncio.run(measure(server, Path(tmp)))
    result["ratio_to_health"] = ratios(result["phases"])
    result["targets"] = verdicts(result)
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    path = write_result("postgres_load", result)
    print(report(result, path))


if __name__ == "__main__":
    main()
