"""Secret redaction for everything a tool returns (to the model, a log line or a report).

Every pattern is precompiled and free of nested unbounded quantifiers, so a megabyte of
hostile output is scanned in linear time. Matches are replaced whole by `[REDACTED]`:
no prefix or suffix of a secret survives.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass

REDACTED = "[REDACTED]"

_SECRET_KEYS = r"(?:password|passwd|secret|token|api[_-]?key|authorization|private[_-]?key)"
_ASSIGNED_KEYS = (
    r"(?:aws_secret_access_key|password|passwd|secret|api[_-]?key|"
    r"access[_-]?token|auth[_-]?token|client[_-]?secret|token)"
)

# (pattern, replacement): group 1, when present, is kept as the visible label.
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private key blocks (a cut-off block is redacted to the end of the text).
    (
        re.compile(
            r"-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY-----"
            r"(?:.*?-----END[A-Z0-9 ]{0,40}PRIVATE KEY-----|.*)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # JSON string fields whose key names a secret: "db_password": "..." -> "[REDACTED]".
    (
        re.compile(
            r'("[^"\\]{0,64}?' + _SECRET_KEYS + r'[^"\\]{0,64}"\s*:\s*")(?:[^"\\]|\\.)*"',
            re.IGNORECASE,
        ),
        r"\1" + REDACTED + '"',
    ),
    # Authorization headers: the credential after the scheme, whatever its shape.
    (
        re.compile(
            r"(?i)\b(authorization[\"']?\s*[:=]\s*[\"']?(?:(?:basic|bearer|digest|token)\s+)?)"
            r"(?!\[REDACTED\])[^\s\"',;]+"
        ),
        r"\1" + REDACTED,
    ),
    # Authorization schemes in free text.
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]{6,}"), r"\1" + REDACTED),
    (
        re.compile(r"(?i)\b(basic\s+)(?=[A-Za-z+/]{0,200}[0-9+/=])[A-Za-z0-9+/]{8,}={0,2}"),
        r"\1" + REDACTED,
    ),
    (re.compile(r"(?i)\b(token\s+token=)[^\s\"',;]+"), r"\1" + REDACTED),
    # key=value / key: value in env files, YAML, query strings and logs.
    (
        re.compile(
            r"(?i)\b([\w-]{0,40}?" + _ASSIGNED_KEYS + r"\s*[=:]\s*)"
            r"(?!\[REDACTED\])[^\s\"',;&]+"
        ),
        r"\1" + REDACTED,
    ),
    # URL userinfo: https://user:pass@host -> https://[REDACTED]@host.
    (
        re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}://)[^\s/:@\"'<>]{1,256}:[^\s/@\"'<>]{1,256}@"),
        r"\1" + REDACTED + "@",
    ),
    # Well-known key formats.
    (re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), REDACTED),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
)


# For each pattern of `_PATTERNS`, in order: what any text it can match contains: one of
# some case-folded words (a tuple of words: all of them), or a match of a simpler pattern.
# A pattern runs only on a text holding one: most texts hold few, and running every pattern
# over every text was most of the cost of a report and of a webhook. The key-named patterns
# need the key word right before `=`, `:` or a closing quote, not just anywhere: a report's
# own "## Token Usage" holds "token". Triggers see the case-folded text, so their patterns
# are lower-case and case-sensitive (IGNORECASE made them as slow as the patterns).
@dataclass(frozen=True, slots=True)
class _Near:
    """One of `words`, which `pattern` then finds in the right place (run only then)."""

    words: tuple[str, ...]
    pattern: re.Pattern[str]


_Trigger = str | tuple[str, ...] | _Near
_KEY_WORDS = ("password", "passwd", "secret", "token", "api_key", "api-key", "apikey")
_TRIGGERS: tuple[tuple[_Trigger, ...], ...] = (
    ("-----begin",),
    (
        _Near(
            (*_KEY_WORDS, "authorization", "private"),
            re.compile(_SECRET_KEYS + r'[^"\\]{0,64}"\s*:'),
        ),
    ),
    ("authorization",),
    ("bearer",),
    ("basic",),
    ("token=",),
    (_Near(_KEY_WORDS, re.compile(_ASSIGNED_KEYS + r"\s*[=:]")),),
    (("://", "@"),),  # the rarer word last
    ("sk-",),
    ("akia", "asia"),
    ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    ("github_pat_",),
    ("xox",),
    ("aiza",),
    ("eyj",),
)
assert len(_TRIGGERS) == len(_PATTERNS)
# One word each trigger needs (of a pair, the rarer; of a `_Near`, any of its words): a text
# with none of them holds nothing any pattern can match, told by plain substring tests.
_ANY_WORD = tuple(
    dict.fromkeys(
        word
        for triggers in _TRIGGERS
        for trigger in triggers
        for word in (
            (trigger,)
            if isinstance(trigger, str)
            else trigger.words
            if isinstance(trigger, _Near)
            else trigger[-1:]
        )
    )
)


def _present(trigger: _Trigger, folded: str) -> bool:
    if isinstance(trigger, str):
        return trigger in folded
    if isinstance(trigger, _Near):
        present = any(word in folded for word in trigger.words)
        return present and trigger.pattern.search(folded) is not None
    return all(word in folded for word in trigger)


def _variants(secret: str) -> set[str]:
    """The secret as-is and as it appears inside a JSON string (escaped)."""
    return {secret, json.dumps(secret, ensure_ascii=False)[1:-1], json.dumps(secret)[1:-1]}


class Redactor:
    """Replace configured secrets and common credential formats with `[REDACTED]`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {v for s in secrets if s for v in _variants(s)}
        # Longest first, so a secret that contains another is replaced whole.
        ordered = sorted(values, key=len, reverse=True)
        self._values = tuple(ordered)
        self._exact = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def _holds_configured(self, text: str) -> bool:
        # A substring test per secret is several times faster than the alternation's search.
        return any(value in text for value in self._values)

    def redact(self, text: str) -> str:
        if self._exact is not None and self._holds_configured(text):
            text = self._exact.sub(REDACTED, text)
        # Case-folded as the patterns' IGNORECASE matches (`ſ` is `s`); a replacement adds
        # no trigger word, so the folded original stays a fair filter.
        folded = text.casefold()
        if not any(word in folded for word in _ANY_WORD):
            return text
        for (pattern, replacement), triggers in zip(_PATTERNS, _TRIGGERS, strict=True):
            if any(_present(trigger, folded) for trigger in triggers):
                text = pattern.sub(replacement, text)
        return text

    def may_hold_secret(self, text: str) -> bool:
        """False when `redact` would surely leave `text` as it is: no configured secret and
        no word any pattern needs. A few substring tests: cheap enough for a whole body."""
        if self._holds_configured(text):
            return True
        folded = text.casefold()
        if not any(word in folded for word in _ANY_WORD):
            return False
        return any(_present(t, folded) for triggers in _TRIGGERS for t in triggers)
