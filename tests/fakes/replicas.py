"""Several runtime processes on one PostgreSQL database (CONTRACT §8), for the replica tests.

    async with fleet(fakes, database_url, tmp_path) as replicas:
        a, b, c = await replicas.start("a", "b", "c")      # `python -m main`, one port each
        a.kill()                                            # kill -9
        await b.terminate()                                 # SIGTERM, then its exit
        await eventually(check, seconds=30, what="...")     # the one bounded poll

Each replica is `python -m main` configured only by its environment: STATE_BACKEND=postgres
on the given database, its own INCIDENTS_DIR, and `LLM_MODEL` set to its name, so every
request the fake model records says which replica sent it (`request["model"]`). Every
process is killed when the fleet's block ends, whatever happened in it.

`MeteredModel` is a fake model's policy that measures, as the model sees them, how many runs
and requests are in flight at once, overall and per service.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from demo.simulators.llm import Call, Step, say, tools
from demo.simulators.server import free_port
from tests.conftest import TEST_SECRETS
from tests.fakes.policies import _SERVICE, incident_of, opening
from tests.fakes.process import clean_environment

ROOT = Path(__file__).resolve().parents[2]
POLL_SECONDS = 0.05
START_SECONDS = 60  # three interpreters importing the app at once on two cores
EXIT_SECONDS = 20  # SIGTERM: SHUTDOWN_GRACE_SECONDS plus 10 s (CONTRACT §3), and a margin
LEASE_SECONDS = 2
# A webhook during a database outage waits for a connection (intake.pg: 3 s, twice) first.
TIMEOUT_SECONDS = 30
AUTH = {"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"}

T = TypeVar("T")


async def eventually(check: Callable[[], Awaitable[T]], *, seconds: float, what: str) -> T:
    """Poll `check` until it returns something truthy (returned); fail after `seconds`.

    The one way these tests wait for another process: a bounded poll of what it serves. A
    replica that cannot be reached (starting, killed) counts as "not yet".
    """
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(httpx.TransportError):
            value = await check()
            if value:
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:.0f} s: {what}")
        await asyncio.sleep(POLL_SECONDS)


@dataclass
class Replica:
    """One runtime process."""

    name: str
    process: asyncio.subprocess.Process
    url: str
    log: Path

    def kill(self) -> None:
        """kill -9: no shutdown, no hand-back; its leases lapse."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGKILL)

    async def terminate(self) -> int:
        """SIGTERM and wait for the exit; its exit status."""
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.process.wait(), EXIT_SECONDS)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def replica_environment(values: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment without any runtime setting, plus `values` (settings
    field names, upper-cased as their variables)."""
    env = clean_environment()
    env.update({name.upper(): str(value) for name, value in values.items()})
    return env


@dataclass
class Fleet:
    """Starts replicas sharing `settings` (the fakes, the database); owns their processes."""

    settings: dict[str, Any]
    workdir: Path
    client: httpx.AsyncClient
    replicas: list[Replica] = field(default_factory=list)

    async def start(self, *names: str, **overrides: Any) -> list[Replica]:
        """Start one replica per name, together (their migrations race, as in a rollout),
        and return them once every one serves."""
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(self._start(name, overrides)) for name in names]
        return [task.result() for task in tasks]

    async def _start(self, name: str, overrides: Mapping[str, Any]) -> Replica:
        home = self.workdir / name
        home.mkdir(parents=True, exist_ok=True)
        values = {
            **self.settings,
            "incidents_dir": home / "incidents",
            "llm_model": name,
            **overrides,
        }
        port = free_port()
        log = home / "runtime.log"
        with log.open("ab") as output:
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "main", "--host", "127.0.0.1", "--port", str(port),
                cwd=ROOT, env=replica_environment(values),
                stdout=output, stderr=subprocess.STDOUT,
            )  # fmt: skip
        replica = Replica(name, process, f"http://127.0.0.1:{port}", log)
        self.replicas.append(replica)
        await eventually(
            lambda: self._serving(replica), seconds=START_SECONDS, what=f"{name} serving"
        )
        return replica

    async def _serving(self, replica: Replica) -> bool:
        if replica.process.returncode is not None:
            raise AssertionError(f"{replica.name} exited:\n{replica.output()[-3000:]}")
        return (await self.client.get(f"{replica.url}/health")).status_code == 200

    async def close(self) -> None:
        for replica in self.replicas:
            replica.kill()
        await asyncio.gather(*(r.process.wait() for r in self.replicas))


@contextlib.asynccontextmanager
async def fleet(
    fakes: Mapping[str, Any], database_url: str, workdir: Path, **settings: Any
) -> AsyncIterator[Fleet]:
    """Replicas on `database_url`, pointed at `fakes` (settings values, as
    `tests.fakes.stack.start_fakes` returns them); `settings`: more settings for all."""
    prompt = workdir / "prompt.md"
    prompt.write_text("# SRE prompt\nDiagnose through /ops/*.\n", encoding="utf-8")
    values = {
        "llm_api_key": TEST_SECRETS["llm_api_key"],
        "pagerduty_api_token": TEST_SECRETS["pagerduty_api_token"],
        "pagerduty_routing_key": TEST_SECRETS["pagerduty_routing_key"],
        "ops_auth_token": TEST_SECRETS["ops_auth_token"],
        "sre_prompt_path": prompt,
        "state_backend": "postgres",
        "database_url": database_url,
        "run_lease_seconds": LEASE_SECONDS,
        "shutdown_grace_seconds": 1,
        **fakes,
        **settings,
    }
    async with httpx.AsyncClient(headers=AUTH, timeout=TIMEOUT_SECONDS) as client:
        replicas = Fleet(values, workdir, client)
        try:
            yield replicas
        finally:
            await replicas.close()


# -- webhooks ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Webhook:
    """One generic-provider webhook, to one replica."""

    url: str
    incident: str
    service: str

    @property
    def incident_id(self) -> str:
        return f"generic:{self.incident}"

    def body(self) -> dict[str, str]:
        return {
            "incident_id": self.incident,
            "summary": "Error rate above 5%",
            "service": self.service,
        }


@dataclass(frozen=True, slots=True)
class Answer:
    """What a webhook got back: its status code, the alert's status and reason (202), and
    the `Retry-After` and error (503)."""

    webhook: Webhook
    code: int
    status: str | None = None
    reason: str | None = None
    retry_after: str | None = None
    error: str | None = None


async def post(client: httpx.AsyncClient, webhook: Webhook) -> Answer:
    """The webhook's answer; code 0 (and the error's name) when the connection ended with no
    answer at all, which a platform treats as a refusal and retries."""
    try:
        response = await client.post(
            f"{webhook.url}/webhook/generic",
            params={"auth_token": TEST_SECRETS["ops_auth_token"]},
            json=webhook.body(),
        )
    except httpx.TransportError as exc:
        return Answer(webhook, 0, error=type(exc).__name__)
    body = response.json()
    if response.status_code == 202:
        alert = body["alerts"][0]
        return Answer(webhook, 202, alert["status"], alert.get("reason"))
    return Answer(
        webhook, response.status_code, retry_after=response.headers.get("retry-after"),
        error=body.get("error"),
    )  # fmt: skip


async def send_all(
    webhooks: Sequence[Webhook],
    *,
    concurrency: int = 64,
    seen: Callable[[Answer], None] = lambda _answer: None,
) -> list[Answer]:
    """Send every webhook, `concurrency` at a time; the answers in the webhooks' order.
    `seen` is told each answer as it arrives.

    Each sender has a client of its own: one httpx pool of 64 busy connections costs the
    test process several milliseconds of CPU per request (its bookkeeping grows with the
    connections in it), which would make the test process, not the replicas, the bottleneck.
    """
    answers: list[Answer | None] = [None] * len(webhooks)
    indexes = iter(range(len(webhooks)))

    async def sender() -> None:
        async with httpx.AsyncClient(timeout=TIMEOUT_SECONDS) as client:
            for index in indexes:  # one iterator shared by every sender
                answers[index] = answer = await post(client, webhooks[index])
                seen(answer)

    async with asyncio.TaskGroup() as group:
        for _ in range(concurrency):
            group.create_task(sender())
    return [a for a in answers if a is not None]


def spread(
    replicas: Sequence[Replica], count: int, *, incidents: int, services: int
) -> list[Webhook]:
    """`count` webhooks over `incidents` incidents (incident i on service i % services),
    round-robin over the replicas."""
    return [
        Webhook(
            replicas[n % len(replicas)].url,
            f"inc-{n % incidents:03d}",
            f"svc{(n % incidents) % services:02d}",
        )
        for n in range(count)
    ]


# -- the model --------------------------------------------------------------------------------


class MeteredModel:
    """A fake model taking `seconds` per answer, two turns per run (the target service's
    `status`, then a conclusion), that measures what it sees in flight at once.

    A run is in flight from its first request to the release of its conclusion, keyed by
    incident (a run resumed elsewhere is the same run); a request from arrival to the
    release of its answer. The runtime learns of a run's end only after its conclusion is
    released, so the next run of that service cannot overlap it in these counts unless
    the runtime really ran two at once.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.runs: dict[str, str] = {}  # incident id -> service, while in flight
        self.requests: Counter[str] = Counter()  # service -> requests in flight
        self.peak_runs = 0
        self.peak_runs_per_service = 0
        self.peak_requests = 0
        self.peak_requests_per_service = 0

    def policy(self, messages: list[dict[str, Any]]) -> Step:
        service, incident_id = (
            _SERVICE.search(opening(messages)),
            incident_of({"messages": messages}),
        )
        assert service is not None, "no target service in the opening message"
        assert incident_id is not None, "no incident id in the opening message"
        name = service.group(1)
        self._began(incident_id, name)
        released = asyncio.Event()
        concluding = any(m.get("role") == "tool" for m in messages)
        asyncio.get_running_loop().call_later(
            self.seconds, self._release, released, incident_id, name, concluding
        )
        if concluding:
            return say(f"{name} checked: healthy. Nothing to do.", hold=released)
        return tools(
            Call("call_ops_endpoint", {"service": name, "endpoint": "status"}), hold=released
        )

    def _began(self, incident_id: str, service: str) -> None:
        self.runs[incident_id] = service
        self.requests[service] += 1
        per_service = Counter(self.runs.values())
        self.peak_runs = max(self.peak_runs, len(self.runs))
        self.peak_runs_per_service = max(self.peak_runs_per_service, per_service[service])
        self.peak_requests = max(self.peak_requests, self.requests.total())
        self.peak_requests_per_service = max(self.peak_requests_per_service, self.requests[service])

    def _release(
        self, released: asyncio.Event, incident_id: str, service: str, concluding: bool
    ) -> None:
        self.requests[service] -= 1
        if concluding:
            self.runs.pop(incident_id, None)
        released.set()


def first_turns(requests: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The requests that open a run: nothing from the model in them yet."""
    return [r for r in requests if not any(m["role"] == "assistant" for m in r["messages"])]
