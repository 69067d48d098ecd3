"""Text hygiene for everything that enters from outside: platforms, services and the model.

One place decides what "safe text" means, so webhooks, tool results, model answers and
reports agree:
- `clean` replaces lone UTF-16 surrogates (they cannot be encoded: a page, a log line or a
  JSON response carrying one fails), control characters other than newline and tab (NUL,
  ANSI escapes, ...) and the bidirectional overrides that reorder what an operator reads;
- `cut` bounds a text to a number of characters, saying how much was cut;
- `too_deep` tells whether a decoded JSON value nests deeper than a limit, without
  recursion (a 100,000-level value must not be able to exhaust the stack).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

REPLACEMENT = "\ufffd"
MAX_DEPTH = 64

# C0 controls but tab and newline, DEL, C1 controls, lone surrogates, and the bidi
# embeddings/overrides/isolates (U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")


def clean(text: str) -> str:
    """`text` with every unsafe character replaced by U+FFFD (a no-op copy-free pass when
    the text is already safe, which is the common case)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(REPLACEMENT, text)


def cut(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, its head kept and the cut announced."""
    if len(text) <= limit:
        return text
    keep = max(limit - len(f"…[truncated {len(text)} chars]"), 0)
    return f"{text[:keep]}…[truncated {len(text) - keep} chars]"


def safe(text: str, limit: int) -> str:
    """`clean` then `cut`: the one step for a text that came from outside."""
    return cut(clean(text), limit)


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when a decoded JSON value has containers nested more than `limit` levels."""
    level: list[Iterable[Any]] = [[value]]
    depth = 0
    while level:
        children: list[Iterable[Any]] = []
        for items in level:
            for item in items:
                if isinstance(item, dict):
                    children.append(item.values())
                elif isinstance(item, list):
                    children.append(item)
        if children:
            depth += 1
            if depth > limit:
                return True
        level = children
    return False


def clean_json(value: Any) -> Any:
    """A decoded JSON value with every string (keys too) passed through `clean`.

    Iterative on purpose; callers bound the depth with `too_deep` first anyway.
    """
    if isinstance(value, str):
        return clean(value)
    if not isinstance(value, dict | list):
        return value
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = clean(item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            if any(isinstance(k, str) and _UNSAFE.search(k) for k in item):
                item = container[key] = {clean(k): v for k, v in item.items()}
            stack.extend((item, k) for k in item)
    return root[0]
