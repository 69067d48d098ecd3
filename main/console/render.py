"""The console's HTML: one Jinja2 environment, its filters, and the headers on every response.

Autoescaping is on for every template and every value: alerts, services, the model and
reports are text. The one exception is the report, which `main.console.markdown` renders to
`Markup` itself. No template uses `|safe`.

Every console response carries `SECURITY_HEADERS`: a Content-Security-Policy that allows
nothing but this origin's own script, style and images (no inline script or style attribute
can run), no framing, no referrer to other sites, no caching.
"""

from __future__ import annotations

import functools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi.responses import HTMLResponse, Response

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC = HERE / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    # Not `no-referrer`: under it browsers send `Origin: null` with the console's own form
    # posts, and the cross-site check (`Sessions.same_origin`) needs the real origin.
    # `same-origin` sends nothing to any other site either.
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}


def secure(response: Response) -> Response:
    """`response` with the console's security headers (its own Cache-Control aside)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers[name] = value
    return response


def page(template: str, *, status: int = 200, **context: Any) -> HTMLResponse:
    """`template` rendered with `context`, as a secured HTML response."""
    html = environment().get_template(template).render(**context)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def render(template: str, **context: Any) -> str:
    """`template` rendered to a string (for rendering in a worker thread)."""
    return environment().get_template(template).render(**context)


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        ago=ago, until=until, utc=utc, iso=iso, pretty=pretty, compact=compact, label=label
    )
    return env


def now() -> datetime:
    return datetime.now(UTC)


def ago(when: datetime | None) -> str:
    """`when` relative to now: "just now", "42 s ago", "3 min ago", "2 h ago", "5 d ago"."""
    if when is None:
        return "-"
    seconds = (now() - when).total_seconds()
    return "just now" if abs(seconds) < 2 else _span(seconds) + " ago"


def until(when: datetime | None) -> str:
    """A deadline relative to now: "in 14 min", or "passed"."""
    if when is None:
        return "-"
    seconds = (when - now()).total_seconds()
    return "passed" if seconds <= 0 else "in " + _span(seconds)


def _span(seconds: float) -> str:
    seconds = abs(seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds // 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h".replace(".0 h", " h")
    return f"{seconds // 86400:.0f} d"


def utc(when: datetime | None) -> str:
    """The absolute time in UTC, to the second."""
    if when is None:
        return "-"
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(when: datetime | None) -> str:
    return "" if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


def pretty(value: Any) -> str:
    """A JSON value as indented text (a string that holds JSON is shown decoded)."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        value = decoded
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def compact(value: Any) -> str:
    """A JSON value on one line (a string as it is)."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def label(value: Any) -> str:
    """An enum value as words: `awaiting_approval` -> `awaiting approval`."""
    return str(getattr(value, "value", value)).replace("_", " ")
