"""Secrets out of alert text at the webhook edge, with `tools.redact.Redactor` doing the work.

Redacting every webhook's summary, labels and raw payload would cost more than the rest of
the request. So a body that cannot hold a secret (`Redactor.may_hold_secret`, a few
substring tests; most bodies) skips redaction altogether (`redactor_for_body`); otherwise
each alert's summary, labels and url are redacted in one pass over bounded texts
(`redact_pieces`), and its raw payload as JSON text (`redact_raw`).
"""

from __future__ import annotations

import json
from typing import Protocol

from intake.parsers.common import Piece
from intake.sanitize import load_json, map_strings


class Redactor(Protocol):
    """What the edge needs of `tools.redact.Redactor`."""

    def redact(self, text: str) -> str: ...

    def may_hold_secret(self, text: str) -> bool: ...


def redactor_for_body(redactor: Redactor, body: bytes, payload: object) -> Redactor | None:
    """`redactor` when the webhook body could hold a secret, else None (no redaction).

    The body's own text is tested when no escape in it can hide a word (`\\u0074oken`,
    `https:\\/\\/`); else the decoded payload's JSON text.
    """
    text = body.decode("utf-8-sig", "replace")
    if "\\u" in text or "\\/" in text:
        text = json.dumps(payload, ensure_ascii=False)
    return redactor if redactor.may_hold_secret(text) else None


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
