"""A small HTTP/1.1 keep-alive load generator on raw asyncio streams.

Each of `concurrency` connections sends a request, reads the whole response (status line,
headers, Content-Length body), and sends the next, until the phase's deadline: a closed
loop, so the offered load adapts to the server. Raw streams keep the client's cost per
request at a few tens of microseconds (httpx costs ~10x more), so on 2 cores the client is
not the bottleneck; each phase reports the client's own CPU use to show it.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench._common import cpu_seconds, percentile

RequestFactory = Callable[[], bytes]


@dataclass
class Phase:
    name: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    unexpected_bodies: int = 0
    client_cpu: float = 0.0
    server_cpu: float = 0.0

    @property
    def requests(self) -> int:
        return len(self.latencies)

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def ms(self, q: float) -> float:
        return percentile(self.latencies, q) * 1000

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "req_per_s": round(self.rate, 1),
            "p50_ms": round(self.ms(50), 2),
            "p99_ms": round(self.ms(99), 2),
            "max_ms": round(self.ms(100), 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "unexpected_bodies": self.unexpected_bodies,
            "client_cpu_cores": round(self.client_cpu / self.seconds, 2) if self.seconds else 0,
            "server_cpu_cores": round(self.server_cpu / self.seconds, 2) if self.seconds else 0,
        }


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def post_json(path: str, body: bytes, headers: dict[str, str]) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
            break
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _connection(
    port: int, make: RequestFactory, deadline: float, phase: Phase, expect: bytes | None
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    clock = time.perf_counter
    try:
        while clock() < deadline:
            request = make()
            started = clock()
            writer.write(request)
            status, body = await _read_response(reader)
            phase.latencies.append(clock() - started)
            phase.statuses[status] += 1
            if expect is not None and expect not in body:
                phase.unexpected_bodies += 1
    finally:
        writer.close()
        await writer.wait_closed()


async def run_phase(
    name: str,
    *,
    port: int,
    make: RequestFactory,
    concurrency: int,
    seconds: float,
    server_pid: int,
    expect: bytes | None = None,
) -> Phase:
    """Drive `make()` requests for `seconds` over `concurrency` keep-alive connections."""
    phase = Phase(name, seconds)
    client0, server0 = time.process_time(), cpu_seconds(server_pid)
    started = time.perf_counter()
    deadline = started + seconds
    async with asyncio.timeout(seconds + 30):  # a stuck server cannot hold the benchmark
        await asyncio.gather(
            *(_connection(port, make, deadline, phase, expect) for _ in range(concurrency))
        )
    phase.seconds = time.perf_counter() - started
    phase.client_cpu = time.process_time() - client0
    phase.server_cpu = cpu_seconds(server_pid) - server0
    return phase
