"""Guardrails: pure checks that stand between the model's (untrusted) arguments and the world.

Each function returns the value to use or raises `Refused` with a reason the model can read.
Nothing here does I/O, so every rule is a plain unit test.
"""

from __future__ import annotations

import re
from typing import Any

from config import ScalingLimit, ServiceEntry, Settings
from tools.errors import Refused

OPS_PATH = re.compile(r"^/ops/[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*$")
REPORT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,120}$")
MAX_ENDPOINT_CHARS = 200
METHODS = ("GET", "POST")

# (test, reason): checked in order on the raw endpoint; the first that matches refuses it.
_ENDPOINT_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"[^\x21-\x7e]"), "non-ASCII, whitespace and control characters are not allowed"),
    (re.compile(r"%"), "percent-encoding is not allowed; write the plain path"),
    (re.compile(r"\\"), "backslashes are not allowed"),
    (re.compile(r"[?#]"), "query strings and fragments are not allowed; give only the path"),
    (re.compile(r"@"), "'@' (user info or host) is not allowed"),
    (re.compile(r"://|^[A-Za-z][A-Za-z0-9+.-]*:"), "a URL or scheme is not allowed"),
    (re.compile(r"//"), "'//' (a host or an empty segment) is not allowed"),
    (re.compile(r"\.\."), "'..' is not allowed"),
)


def resolve_service(settings: Settings, name: str) -> ServiceEntry:
    """The registered service (case-insensitive) or a refusal listing the known names."""
    entry = settings.service(name)
    if entry is None:
        known = ", ".join(sorted(settings.service_registry))
        raise Refused(f"service {name[:64]!r} is not registered; registered services: {known}")
    return entry


def normalize_endpoint(endpoint: str) -> str:
    """Return the `/ops/...` path to call, or refuse. `status` and `ops/status` mean `/ops/status`.

    The result only ever becomes `entry.base_url + path`; a host, scheme or encoded
    separator written by the model never reaches the URL.
    """
    if not endpoint:
        raise Refused("endpoint is empty; use a path such as /ops/status")
    if len(endpoint) > MAX_ENDPOINT_CHARS:
        raise Refused(f"endpoint is longer than {MAX_ENDPOINT_CHARS} characters")
    for pattern, reason in _ENDPOINT_RULES:
        if pattern.search(endpoint):
            raise Refused(f"endpoint {endpoint[:80]!r} refused: {reason}")
    path = _with_ops_prefix(endpoint)
    if not OPS_PATH.match(path):
        raise Refused(
            f"endpoint {endpoint[:80]!r} refused: only paths under /ops/ made of letters, "
            "digits, '-' and '_' segments are allowed, e.g. /ops/status"
        )
    return path


def _with_ops_prefix(endpoint: str) -> str:
    if endpoint.startswith("/"):
        return endpoint
    if endpoint.startswith("ops/"):
        return "/" + endpoint
    return "/ops/" + endpoint


def check_method(method: str, body: dict[str, Any] | None) -> dict[str, Any] | None:
    """GET or POST only; a body only with POST (an empty `{}` with GET is ignored)."""
    if method not in METHODS:
        raise Refused(f"method {method[:16]!r} is not allowed; use GET or POST")
    if method == "GET" and body:
        raise Refused("a body is only allowed with POST")
    return body if method == "POST" else None


def check_scaling(
    settings: Settings, service: str, replicas: int
) -> tuple[ServiceEntry, ScalingLimit]:
    """The service and its bounds, if `replicas` is within SCALING_LIMITS."""
    entry = resolve_service(settings, service)
    limit = settings.scaling_limits.get(entry.name)
    if limit is None:
        raise Refused(f"scaling is not configured for {entry.name} (no SCALING_LIMITS entry)")
    if not limit.min_replicas <= replicas <= limit.max_replicas:
        raise Refused(
            f"replicas={replicas} is outside the allowed range for {entry.name}: "
            f"{limit.min_replicas}..{limit.max_replicas}"
        )
    return entry, limit


def check_report_filename(filename: str) -> str:
    """A plain file name for INCIDENTS_DIR, `.md` appended if missing; traversal refused."""
    if not REPORT_NAME.match(filename) or ".." in filename:
        raise Refused(
            f"report filename {filename[:80]!r} refused: use a plain name of letters, digits, "
            "'.', '_' and '-' (no path, no '..', not starting with a dot), e.g. db-outage.md"
        )
    return filename if filename.endswith(".md") else filename + ".md"
