"""Secrets out of alert text at the webhook edge, with `tools.redact.Redactor` doing the work.

A Redactor scans a text once per pattern, about 0.4 us a character: run on every webhook's
summary, labels and raw payload it would cost more than the rest of the request. So:
- `Screen` tells, with a few substring tests, whether a text could hold anything the
  Redactor redacts; a body that cannot (most) skips redaction altogether;
- otherwise each alert's summary, labels and url are redacted in one pass over bounded
  texts (`redact_pieces`), and its raw payload as JSON text (`redact_raw`), each through the
  screen again, so only the texts that could hold a secret pay for the Redactor.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Protocol

from intake.parsers.common import Piece
from intake.sanitize import load_json, map_strings

# A word (case-folded) that each pattern of `tools.redact` needs in order to match: PEM
# private keys; secret-named JSON keys and key=value pairs; Authorization schemes and
# `token token=`; the key formats sk-, AKIA/ASIA, gh?_, github_pat_, xox?-, AIza, eyJ. URL
# userinfo needs both `://` and `@`. Keep in step with tools/redact.py: the tests run one
# example of each pattern through `Screen`.
SECRET_HINTS = (
    "private",
    "passw",
    "secret",
    "token",
    "api_key",
    "api-key",
    "apikey",
    "authorization",
    "bearer",
    "basic",
    "sk-",
    "akia",
    "asia",
    "ghp_",
    "gho_",
    "ghu_",
    "ghs_",
    "ghr_",
    "github_pat_",
    "xox",
    "aiza",
    "eyj",
)


class Redactor(Protocol):
    """What the edge needs of `tools.redact.Redactor`: secrets in a text replaced."""

    def redact(self, text: str) -> str: ...


class Screen:
    """A `Redactor` run only on texts that could hold a secret: one of `secrets` (as is or
    JSON-escaped, as the Redactor matches them), a word of `SECRET_HINTS`, or `://` with `@`.
    """

    def __init__(self, redactor: Redactor, secrets: Iterable[str]) -> None:
        self._redactor = redactor
        self._secrets = tuple({form for secret in secrets if secret for form in _forms(secret)})

    def may_hold_secret(self, text: str) -> bool:
        if any(secret in text for secret in self._secrets):
            return True
        folded = text.casefold()  # as the Redactor's case-insensitive patterns match
        if "://" in folded and "@" in folded:
            return True
        return any(hint in folded for hint in SECRET_HINTS)

    def redact(self, text: str) -> str:
        return self._redactor.redact(text) if self.may_hold_secret(text) else text

    def for_body(self, body: bytes, payload: object) -> Screen | None:
        """This screen when the webhook body could hold a secret, else None (no redaction).

        The body's own text is tested when no escape in it can hide a word (`\\u0074oken`,
        `https:\\/\\/`); else the decoded payload's JSON text.
        """
        text = body.decode("utf-8-sig", "replace")
        if "\\u" in text or "\\/" in text:
            text = json.dumps(payload, ensure_ascii=False)
        return self if self.may_hold_secret(text) else None


def _forms(secret: str) -> tuple[str, ...]:
    """The secret and its JSON-escaped forms (the Redactor's variants)."""
    if secret.isascii() and secret.isprintable() and '"' not in secret and "\\" not in secret:
        return (secret,)  # JSON escapes nothing in it: the usual token
    return (secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1])


def redact_pieces(
    redactor: Redactor, texts: list[Piece], labels: list[tuple[str, Piece]]
) -> list[tuple[str, Piece]]:
    """Redact the texts and the labels in place, in one pass; return the labels, each key
    redacted too when it held a secret.

    One redaction of the lines joined costs a fraction of one per label (none holds a
    newline: each is one line). A label is seen as `key=value`, so a secret-named key
    (`db_password`) has its value redacted. A match across lines changes the line count:
    then each line is redacted alone.
    """
    lines = [p.text for p in texts] + [f"{key}={p.text}" for key, p in labels]
    joined = "\n".join(lines)
    redacted = redactor.redact(joined)
    if redacted == joined:  # the usual case, even for a body that could hold a secret
        return labels
    done = redacted.split("\n")
    if len(done) != len(lines):
        done = [redactor.redact(line) for line in lines]
    for piece, line in zip(texts, done[: len(texts)], strict=True):
        piece.text = line
    result: list[tuple[str, Piece]] = []
    for (key, piece), line in zip(labels, done[len(texts) :], strict=True):
        if line.startswith(f"{key}="):
            piece.text = line[len(key) + 1 :]
        else:  # the key itself held a secret
            key, piece.text = redactor.redact(key), redactor.redact(piece.text)
        result.append((key, piece))
    return result


def redact_raw(raw: object, redactor: Redactor) -> object:
    """`raw` with its secrets redacted: its JSON text redacted (so secret-named keys are
    seen), decoded again. When a match ate an escape and the text no longer decodes, each
    string of a copy of `raw` is redacted alone instead."""
    text = json.dumps(raw, ensure_ascii=False, default=str)
    redacted = redactor.redact(text)
    if redacted == text:
        return raw
    try:
        return load_json(redacted)
    except ValueError:
        return map_strings(load_json(text), redactor.redact)
