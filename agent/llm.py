"""The chat-completions client: one call, retried by the contract's rules.

`openai` errors are translated into `LLMError` here and nowhere else. The SDK's own
retries are off (`max_retries=0`): it would retry `insufficient_quota` 429s, which the
contract says must not be retried, and it knows nothing of the run's deadline.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import openai
from openai import RequestOptions

from agent.completion import TOO_DEEP, Completion, parse_completion

logger = logging.getLogger(__name__)

RETRIES = 3
NOT_RETRIED_CODES = frozenset({"insufficient_quota", "context_length_exceeded"})
# A 429 "Request too large … tokens per min" can never succeed as sent: retrying only waits.
NEVER_FITS = re.compile(r"request too large", re.IGNORECASE)
TRY_AGAIN = re.compile(r"try again in (\d+(?:\.\d+)?)(ms|s)\b", re.IGNORECASE)


class LLMError(Exception):
    """An LLM call failed for good. `kind` is short and safe to put in a report."""

    def __init__(self, kind: str, detail: str, *, status: int | None = None) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.detail = detail
        self.status = status


@dataclass(frozen=True, slots=True)
class _Attempt:
    retry: bool
    wait: float | None  # the server's Retry-After, when it sent one
    error: LLMError


class LLM:
    """Sends chat completions with tools; retries 429/5xx/timeouts with backoff."""

    def __init__(
        self,
        *,
        client: openai.AsyncOpenAI,
        model: str,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = 1.0,
    ) -> None:
        self._client = client
        self._model = model
        self._sleep = sleep
        self._clock = clock
        self._backoff_base = backoff_base

    async def complete(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None,
        deadline: float,
        trace_id: str,
    ) -> Completion:
        """One completion; raises `LLMError` once retries or the deadline run out."""
        for attempt in range(RETRIES + 1):
            try:
                return await self._create(messages, tools, deadline, trace_id)
            except openai.OpenAIError as exc:
                verdict = classify(exc)
            if not verdict.retry or attempt == RETRIES:
                raise verdict.error
            delay = self._delay(attempt, verdict.wait)
            if self._clock() + delay >= deadline:
                raise LLMError("deadline", f"no time left to retry after {verdict.error}")
            logger.warning(
                "LLM call failed (%s); retry %d in %.1fs", verdict.error.kind, attempt + 1, delay
            )
            await self._sleep(delay)
        raise AssertionError("unreachable")

    async def _create(
        self,
        messages: list[dict[str, Any]],
        tools: list[dict[str, Any]] | None,
        deadline: float,
        trace_id: str,
    ) -> Completion:
        """POST /chat/completions through the SDK's raw `post`: the same client, auth and
        error translation as `chat.completions.create`, without its per-call walk of every
        message and tool schema against the typed parameters, nor its recursive response
        models (together most of a turn's overhead; see agent/completion.py).

        A body nested too deeply for the JSON decoder (it raises `RecursionError` near 1,000
        levels) is the model's answer nested deeper than the contract's 64 levels: it comes
        back as an `Unreadable` message the loop answers, not as an error that ends the run.
        """
        remaining = max(1.0, deadline - self._clock())
        body: dict[str, Any] = {"model": self._model, "messages": messages}
        if tools:
            body.update(tools=tools, tool_choice="auto")
        options: RequestOptions = {
            "headers": {"X-Trace-Id": trace_id},
            "timeout": httpx.Timeout(min(remaining, 120.0), connect=10.0),
        }
        response = await self._client.post(
            "/chat/completions", body=body, cast_to=httpx.Response, options=options
        )
        try:
            return parse_completion(response.json())
        except RecursionError:
            return Completion(message=TOO_DEEP, usage=None)
        except ValueError:
            raise LLMError("bad_response", "the LLM API answered with invalid JSON") from None

    def _delay(self, attempt: int, server_wait: float | None) -> float:
        if server_wait is not None:
            return server_wait
        ceiling = self._backoff_base * 2**attempt
        return random.uniform(ceiling / 2, ceiling)  # exponential backoff with jitter


def classify(exc: openai.OpenAIError) -> _Attempt:
    """Decide whether an SDK error is retried, and how long the server asked us to wait."""
    if isinstance(exc, openai.APITimeoutError):
        return _Attempt(True, None, LLMError("timeout", "the LLM API did not answer in time"))
    if isinstance(exc, openai.APIConnectionError):
        return _Attempt(True, None, LLMError("connection", "cannot reach the LLM API"))
    if not isinstance(exc, openai.APIStatusError):
        return _Attempt(False, None, LLMError("client", type(exc).__name__))
    code = _error_code(exc)
    message = _message(exc)
    if NEVER_FITS.search(message):
        code = "request_too_large"
    error = LLMError(code or f"http_{exc.status_code}", message, status=exc.status_code)
    retry = (exc.status_code == 429 or exc.status_code >= 500) and code not in NOT_RETRIED_CODES
    retry = retry and code != "request_too_large"
    wait = _retry_after(exc.response)
    return _Attempt(retry, wait if wait is not None else _hinted_wait(message), error)


def _error_code(exc: openai.APIStatusError) -> str | None:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    code = error.get("code") or error.get("type") if isinstance(error, dict) else None
    return str(code) if code else None


def _message(exc: openai.APIStatusError) -> str:
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error", body)
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or f"HTTP {exc.status_code}")[:300]


def _hinted_wait(message: str) -> float | None:
    """OpenAI's rate-limit messages say "Please try again in 1.574s" (or "20s", "500ms")."""
    match = TRY_AGAIN.search(message)
    if match is None:
        return None
    seconds = float(match.group(1)) / (1000 if match.group(2).lower() == "ms" else 1)
    return seconds if seconds <= 300 else None


def _retry_after(response: httpx.Response) -> float | None:
    """`retry-after-ms` or `Retry-After` in seconds; dates and junk are ignored."""
    for header, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = response.headers.get(header)
        try:
            seconds = float(value) * scale if value is not None else None
        except ValueError:
            continue
        if seconds is not None and 0 <= seconds <= 300:
            return seconds
    return None
