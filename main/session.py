"""Console sessions (CONTRACT §9): who may press Approve, and proof that they meant to.

Signing in with `OPS_AUTH_TOKEN` at `/console/login` sets one cookie: a signed, expiring
value (itsdangerous) holding a random CSRF token. The signing key is derived from
`OPS_AUTH_TOKEN`, so every replica reads every other's sessions, and rotating the token
signs everyone out. The cookie is `HttpOnly`, `SameSite=Strict` and, over https, `Secure`.

Every state-changing console request must carry the session's CSRF token (a hidden form
field, or the `X-CSRF-Token` header for the JSON API) and, when the browser says where it
comes from, come from this origin. `SameSite=Strict` alone already keeps the cookie off
cross-site requests; the token makes that independent of the browser.

The operator's name: the `CONSOLE_IDENTITY_HEADER` an authenticating proxy sets on each
request (IAP's `X-Goog-Authenticated-User-Email`, say), else `token`.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from itsdangerous import BadSignature, URLSafeTimedSerializer

from config import Settings

COOKIE = "sre_console"
SESSION_SECONDS = 12 * 3600
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
MAX_NAME_CHARS = 200
_SALT = "sre-agent-console-session"


@dataclass(frozen=True, slots=True)
class Session:
    csrf: str


class Sessions:
    """Issues and reads console session cookies for one runtime's settings."""

    def __init__(self, settings: Settings, *, max_age: int = SESSION_SECONDS) -> None:
        secret = settings.ops_auth_token.get_secret_value().encode()
        key = hmac.new(secret, b"console-session-key", hashlib.sha256).hexdigest()
        self._serializer = URLSafeTimedSerializer(key, salt=_SALT)
        self._settings = settings
        self.max_age = max_age

    def issue(self, response: Response, request: Request) -> Session:
        """A new session, set on `response` as the cookie."""
        session = Session(csrf=secrets.token_urlsafe(24))
        response.set_cookie(
            COOKIE,
            self._serializer.dumps({"csrf": session.csrf}),
            max_age=self.max_age,
            httponly=True,
            samesite="strict",
            secure=_https(request, self._settings),
            path="/",
        )
        return session

    def read(self, request: Request) -> Session | None:
        """The request's valid, unexpired session, or None."""
        value = request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # also SignatureExpired
            return None
        csrf = data.get("csrf") if isinstance(data, dict) else None
        return Session(csrf=csrf) if isinstance(csrf, str) and csrf else None

    @staticmethod
    def end(response: Response) -> None:
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def same_origin(self, request: Request) -> bool:
        """False when the browser says the request comes from another site (`Origin`,
        `Sec-Fetch-Site`); requests that say nothing pass (the CSRF token still applies)."""
        site = request.headers.get("sec-fetch-site")
        if site is not None and site not in ("same-origin", "none"):
            return False
        origin = request.headers.get("origin")
        if origin is None or origin == "null":
            return origin is None
        host = request.headers.get("host", "")
        return origin.split("://", 1)[-1] == host or origin == self._settings.public_url


def csrf_matches(session: Session, presented: str | None) -> bool:
    if not presented:
        return False
    return hmac.compare_digest(session.csrf.encode(), presented.encode())


def operator(request: Request, settings: Settings) -> str:
    """Who decides: the identity header's user when configured and set, else `token`."""
    header = settings.console_identity_header
    name = request.headers.get(header, "").strip() if header else ""
    # IAP prefixes its user header with "accounts.google.com:"; keep the user's part.
    name = name.removeprefix("accounts.google.com:")
    return "".join(c for c in name if c.isprintable())[:MAX_NAME_CHARS] or "token"


def _https(request: Request, settings: Settings) -> bool:
    if settings.public_url is not None:
        return settings.public_url.startswith("https://")
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip()
    return request.url.scheme == "https" or forwarded == "https"
