"""What every provider parser shares: result types, service mapping, priority words, caps.

Provider modules turn a payload into `Draft`s (or `Ignored`); `intake.parsers.parse_webhook`
finishes each draft into a bounded `models.Alert` in one place, so the text hygiene (id
length, clean and redacted summary and labels, raw size) and the critical-service priority
raise are applied exactly once. Each draft says where in the body its id came from
(`key_loc`), so an id over the limit is refused naming that field.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, BeforeValidator, ValidationError

from config import ServiceEntry
from intake.sanitize import clean, cut
from models import AlertState, Priority

logger = logging.getLogger(__name__)

MAX_ID_CHARS = 256
MAX_SUMMARY_CHARS = 1024
MAX_LABELS = 64
MAX_LABEL_KEY_CHARS = 128
MAX_LABEL_VALUE_CHARS = 256
MAX_URL_CHARS = 2048
MAX_RAW_BYTES = 16 * 1024
REDACT_MARGIN = 512  # characters past a text's limit kept until it is redacted (`Piece`)

Registry = Mapping[str, ServiceEntry]
ModelT = TypeVar("ModelT", bound=BaseModel)

SEVERITY_PRIORITY: dict[str, Priority] = {
    **{p.value.lower(): p for p in Priority},
    "critical": Priority.P1,
    "error": Priority.P2,
    "high": Priority.P2,
    "warning": Priority.P3,
    "warn": Priority.P3,
    "medium": Priority.P3,
    "info": Priority.P4,
    "informational": Priority.P4,
    "low": Priority.P4,
}
"""Severity words of CONTRACT §3 (GCP, Alertmanager/Grafana, Datadog, New Relic), lowercased."""


Loc = tuple[str | int, ...]
"""A path into the request body, as in a 422's `detail[].loc`."""


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that is not an alert (platform test, SNS confirmation...): answered 202 'ignored'.

    `reason` is `test_notification`, `subscription_confirmation`, `unsubscribe_confirmation`
    or `not_an_alarm`; `incident_id` is provider-prefixed, best effort; `key_loc` is the
    body field it came from.
    """

    incident_id: str
    reason: str
    service: str | None = None
    priority: Priority = Priority.P5
    key_loc: Loc = field(default=(), compare=False)


class PayloadError(Exception):
    """The body does not have the provider's shape. `errors` -> a 422 body.

    Each error is `{"loc": [path parts...], "msg": str, "type": str}`; input values are
    never included, so a secret sent in a wrong field is not echoed back.
    """

    def __init__(self, errors: list[dict[str, object]]) -> None:
        self.errors = errors
        shown = "; ".join(f"{_dotted(e.get('loc'))}: {e.get('msg')}" for e in errors[:3])
        super().__init__(shown or "invalid payload")

    @classmethod
    def at(cls, loc: Loc, msg: str, kind: str) -> PayloadError:
        """One error at `loc`."""
        return cls([{"loc": list(loc), "msg": msg, "type": kind}])

    @classmethod
    def from_validation(
        cls, exc: ValidationError, prefix: tuple[str | int, ...] = ()
    ) -> PayloadError:
        """Translate pydantic's errors (without input or URL), locations under `prefix`."""
        errors: list[dict[str, object]] = []
        for error in exc.errors(include_input=False, include_url=False, include_context=False):
            msg = error["msg"]
            if error["type"] in ("model_type", "dict_type", "model_attributes_type"):
                msg = "Input should be a JSON object"
            errors.append({"loc": [*prefix, *error["loc"]], "msg": msg, "type": error["type"]})
        return cls(errors)


def _dotted(loc: object) -> str:
    return ".".join(str(part) for part in loc) if isinstance(loc, list) and loc else "body"


@dataclass(slots=True)
class Draft:
    """One alert as a provider parser read it, before the shared caps and priority raise.

    `key` is the provider-prefixed incident id; `key_loc` the body field it came from.
    """

    key: str
    summary: str
    state: AlertState = AlertState.FIRING
    priority: Priority = Priority.P3
    service: ServiceEntry | None = None
    started_at: datetime | None = None
    labels: Mapping[str, object] = field(default_factory=dict)
    url: str | None = None
    raw: object = None
    key_loc: Loc = ()


def validate(model: type[ModelT], data: object, *, loc: Loc = ()) -> ModelT:
    """`model.model_validate(data)`, with errors translated to `PayloadError` at `loc`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise PayloadError.from_validation(exc, loc) from None


def _to_text(value: object) -> object:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float) else value


Text = Annotated[str, BeforeValidator(_to_text)]
"""A string field that also accepts a JSON number or boolean (templates render either)."""


def _to_number(value: object) -> object:
    if isinstance(value, str):
        try:
            return float(value) if value.strip() else None
        except ValueError:
            return None  # an unrendered template variable: a time is best effort
    return value


EpochNumber = Annotated[float | None, BeforeValidator(_to_number)]
"""Epoch time as a JSON number or a digit string (Datadog/New Relic render strings)."""


# --- identity -----------------------------------------------------------------------------


def stable_hash(value: object, length: int = 16) -> str:
    """A short hex digest of `value`'s canonical JSON (sorted keys)."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    # surrogatepass: a value not decoded by the edge may hold a lone surrogate; hash it anyway.
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def checked_id(incident_id: str, loc: Loc) -> str:
    """The id made safe (`clean`); `PayloadError` at `loc` when over 256 characters."""
    if len(incident_id) > MAX_ID_CHARS:
        msg = f"incident id over {MAX_ID_CHARS} characters ({len(incident_id)})"
        raise PayloadError.at(loc, msg, "incident_id_too_long")
    return clean(incident_id)


# --- service mapping ----------------------------------------------------------------------


def _host_of(candidate: str) -> tuple[str, int | None] | None:
    try:
        parts = urlsplit(candidate if "://" in candidate else f"//{candidate}")
        return (parts.hostname, parts.port) if parts.hostname else None
    except ValueError:
        return None


def _by_host(candidate: str, registry: Registry) -> ServiceEntry | None:
    found = _host_of(candidate)
    if found is None:
        return None
    host, port = found
    same_host = [e for e in registry.values() if e.host == host]
    if port is not None:
        exact = [e for e in same_host if urlsplit(e.base_url).port == port]
        same_host = exact or same_host
    return same_host[0] if len(same_host) == 1 else None


def find_service(candidates: Iterable[object], registry: Registry) -> ServiceEntry | None:
    """First candidate naming a registered service, by name or by host (case-insensitive).

    A candidate may be a name, a bare host (`db-1`, `db-1:5432`) or a URL. A host shared by
    several entries matches only with the port that tells them apart.
    """
    names = {name.lower(): entry for name, entry in registry.items()}
    for candidate in candidates:
        if not isinstance(candidate, str) or not candidate.strip():
            continue
        text = candidate.strip()
        entry = names.get(text.lower()) or _by_host(text, registry)
        if entry is not None:
            return entry
    return None


def find_by_name(candidates: Iterable[str], registry: Registry) -> ServiceEntry | None:
    """First candidate that is a registry name (case-insensitive); hosts are not tried."""
    names = {name.lower(): entry for name, entry in registry.items()}
    return next((names[c.lower()] for c in candidates if c.lower() in names), None)


# --- priority -----------------------------------------------------------------------------


def severity_priority(*words: object) -> Priority | None:
    """The priority of the first recognised severity word (case-insensitive), else None."""
    for word in words:
        if isinstance(word, str) and (found := SEVERITY_PRIORITY.get(word.strip().lower())):
            return found
    return None


# --- text, labels, raw --------------------------------------------------------------------


def one_line(text: object) -> str:
    """Whitespace (CR, form feed, U+2028... too) collapsed to single spaces, and trimmed."""
    return " ".join(str(text).split()) if text is not None else ""


def first_text(*values: object) -> str | None:
    """The first value that is a non-blank string."""
    return next((v for v in values if isinstance(v, str) and v.strip()), None)


def _label_value(value: object) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


@dataclass(slots=True)
class Piece:
    """One text of an alert on its way out: one clean line, held at its limit plus
    `REDACT_MARGIN` characters until redacted, then cut to the limit with a marker.

    The margin lets a secret that straddles the cut be recognised whole (so not even its
    head is shown), while redaction never scans more than a bounded text.
    """

    text: str
    limit: int
    beyond: int = 0  # characters of the one-line text past `text`

    @classmethod
    def of(cls, value: object, limit: int) -> Piece:
        flat = clean(one_line(value))
        head = flat[: limit + REDACT_MARGIN]
        return cls(head, limit, len(flat) - len(head))

    def final(self) -> str:
        if not self.beyond:
            return cut(self.text, self.limit)
        return cut(self.text, self.limit, total=max(len(self.text) + self.beyond, self.limit + 1))


def label_pieces(labels: Mapping[str, object]) -> list[tuple[str, Piece]]:
    """At most 64 labels (None values dropped), keys one clean line of <= 128 chars."""
    pieces: list[tuple[str, Piece]] = []
    for key, value in labels.items():
        if len(pieces) >= MAX_LABELS:
            logger.debug("labels cut to %d entries (had %d)", MAX_LABELS, len(labels))
            break
        if value is not None:
            name = cut(clean(one_line(key)), MAX_LABEL_KEY_CHARS)
            pieces.append((name, Piece.of(_label_value(value), MAX_LABEL_VALUE_CHARS)))
    return pieces


def prefixed(prefix: str, labels: Mapping[str, object] | None) -> dict[str, object]:
    """`labels` with every key prefixed (`resource.` + `zone`), for flattening nested maps."""
    return {f"{prefix}{key}": value for key, value in (labels or {}).items()}


def cap_raw(raw: object) -> object:
    """`raw` itself, or a bounded preview when its compact JSON exceeds 16 KiB."""
    text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False, default=str)
    data = text.encode()
    if len(data) <= MAX_RAW_BYTES:
        return raw
    preview = data[:MAX_RAW_BYTES].decode(errors="ignore")
    return {"truncated": True, "bytes": len(data), "preview": preview}


# --- time ---------------------------------------------------------------------------------

UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def known_time(moment: datetime | None) -> datetime | None:
    """`moment` as aware UTC (naive means UTC), or None when it stands for "unknown".

    Platforms write an unknown time as a sentinel: Go's zero time `0001-01-01T00:00:00Z`
    (Alertmanager, Grafana), epoch 0 (GCP's test send, unrendered templates). No alert
    begins at or before the Unix epoch, so every such time is None, as is one out of range.
    """
    if moment is None:
        return None
    try:
        aware = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (OverflowError, ValueError):
        return None
    return aware if aware > UNIX_EPOCH else None


def from_epoch(value: object, *, millis: bool = False) -> datetime | None:
    """Epoch seconds (or ms) as a number or digit string -> aware UTC; 0 or junk -> None."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    try:
        return known_time(datetime.fromtimestamp(number / 1000 if millis else number, tz=UTC))
    except (OverflowError, OSError, ValueError):
        return None


def from_iso(value: object) -> datetime | None:
    """An ISO-8601 string -> aware UTC (naive means UTC); a sentinel (`known_time`) or junk
    -> None. A trailing ` UTC` is read as `Z`."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    text = f"{text[:-3].rstrip()}+00:00" if text.upper().endswith(" UTC") else text
    try:
        return known_time(datetime.fromisoformat(text))
    except ValueError:
        return None
