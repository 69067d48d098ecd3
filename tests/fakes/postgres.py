"""A real PostgreSQL server for the tests (CONTRACT §8): no mocks of the database.

The server is the benchmarks' (`bench/_postgres.py`), run without fsync (a crash of the
machine is not what the tests are about). A machine without PostgreSQL fails the test that
needs it, loudly, saying what to install; it is never skipped.
"""

from __future__ import annotations

import pytest

from bench import _postgres


class PostgresServer(_postgres.PostgresServer):
    @classmethod
    def start_new(cls, *, durable: bool = False) -> PostgresServer:
        try:
            server = super().start_new(durable=durable)
        except _postgres.NotInstalled as exc:
            pytest.fail(str(exc))
        assert isinstance(server, PostgresServer)
        return server
