"""Google access tokens for the cloud tools: Application Default Credentials via google-auth.

ADC finds the metadata server on Cloud Run or the key file named by
GOOGLE_APPLICATION_CREDENTIALS (whose `token_uri` google-auth honours). google-auth's token
requests are blocking (`requests`), so loading and refreshing run in a worker thread; the
token is cached and refreshed `REFRESH_MARGIN` before it expires, once for all concurrent
callers (an `asyncio.Lock` makes the refresh single-flight). Nothing happens until the
first query: credentials are not needed to start.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import google.auth
import google.auth.exceptions
import requests
from google.auth.credentials import Credentials
from google.auth.transport.requests import Request

logger = logging.getLogger(__name__)

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
REFRESH_MARGIN = timedelta(minutes=5)
NO_CREDENTIALS = (
    "no Google credentials: set GOOGLE_APPLICATION_CREDENTIALS or run on Cloud Run "
    "with a service account"
)


class CredentialsError(Exception):
    """Credentials could not be found or a token could not be obtained; safe to show."""


class _BoundedRequest(Request):
    """google-auth's requests transport with a timeout cap (its default is 120 s)."""

    def __init__(self, session: requests.Session, timeout: float) -> None:
        super().__init__(session)
        self._cap = timeout

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Any:
        bounded = min(timeout, self._cap) if timeout else self._cap
        # google-auth's transport is untyped; the signature above is its documented one.
        return super().__call__(url, method, body, headers, bounded, **kwargs)  # type: ignore[no-untyped-call]


def load_default_credentials() -> Credentials:
    """ADC with the cloud-platform scope (blocking: run it in a thread)."""
    try:
        credentials, _project = google.auth.default(scopes=list(SCOPES))
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise CredentialsError(f"{NO_CREDENTIALS} ({_first_line(exc)})") from exc
    return credentials


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__


def _utcnow() -> datetime:
    return datetime.now(UTC)


class GoogleTokenSource:
    """A cached, single-flight access token from Application Default Credentials."""

    def __init__(
        self,
        *,
        timeout: float,
        load: Callable[[], Credentials] = load_default_credentials,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._load = load
        self._now = now
        self._timeout = timeout
        self._credentials: Credentials | None = None
        self._lock = asyncio.Lock()

    async def token(self) -> str:
        """A token valid for at least `REFRESH_MARGIN`, or `CredentialsError`."""
        if self._credentials is not None and self._fresh(self._credentials):
            return str(self._credentials.token)
        async with self._lock:
            # Re-checked under the lock: a caller that waited finds the refreshed token.
            credentials = self._credentials
            if credentials is None:
                credentials = self._credentials = await asyncio.to_thread(self._load)
            if not self._fresh(credentials):
                await asyncio.to_thread(self._refresh, credentials)
            return str(credentials.token)

    def invalidate(self) -> None:
        """Forget the token (e.g. after a 401) so the next call refreshes it."""
        if self._credentials is not None:
            self._credentials.token = None

    def _fresh(self, credentials: Credentials) -> bool:
        """A token that outlives the margin (google-auth: no expiry means it never expires)."""
        if not credentials.token:
            return False
        expiry = credentials.expiry
        if expiry is None:
            return True
        expiry = expiry if expiry.tzinfo else expiry.replace(tzinfo=UTC)
        return bool(expiry - self._now() > REFRESH_MARGIN)

    def _refresh(self, credentials: Credentials) -> None:
        try:
            with requests.Session() as session:
                request = _BoundedRequest(session, self._timeout)
                credentials.refresh(request)  # type: ignore[no-untyped-call]  # untyped library
        except google.auth.exceptions.GoogleAuthError as exc:
            raise CredentialsError(
                f"could not obtain a Google access token: {_first_line(exc)}"
            ) from exc
        logger.debug("Google access token refreshed; expires %s", credentials.expiry)
