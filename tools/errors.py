"""The two ways a tool call fails: refused by a guardrail, or failed downstream.

Both carry a message written for the model (it reads it and adapts) and optional details
(e.g. the status code and body of a non-2xx answer) that go back with it.
"""

from __future__ import annotations

from typing import Any


class ToolError(Exception):
    """The call was made (or attempted) and failed: non-2xx, timeout, unreachable."""

    def __init__(
        self, message: str, details: dict[str, Any] | None = None, *, redacted: bool = False
    ) -> None:
        """`redacted`: the raiser redacted what needed it already; the executor must not
        redact the message again (a name the runtime chose, such as `denied by token:`,
        looks like a credential to the patterns)."""
        super().__init__(message)
        self.message = message
        self.details = details or {}
        self.redacted = redacted


class Refused(ToolError):
    """A guardrail refused the call before anything was sent."""
