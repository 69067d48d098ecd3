"""Text hygiene for everything that enters from outside: platforms, services and the model.

One place decides what "safe text" means, so webhooks, tool results, model answers and
reports agree:
- `clean` replaces lone UTF-16 surrogates (they cannot be encoded: a page, a log line or a
  JSON response carrying one fails), control characters other than newline and tab (NUL,
  ANSI escapes, ...) and the bidirectional overrides that reorder what an operator reads;
- `cut` bounds a text to a number of characters, saying how much was cut;
- `too_deep` tells whether a decoded JSON value nests deeper than a limit, without
  recursion (a 100,000-level value must not be able to exhaust the stack);
- `load_json` decodes a JSON text from outside into a value that is bounded in depth and
  whose every string is clean.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

REPLACEMENT = "\ufffd"
MAX_DEPTH = 64

# C0 controls but tab and newline, DEL, C1 controls, lone surrogates, and the bidi
# embeddings/overrides/isolates (U+202A-U+202E, U+2066-U+2069).
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")

# What `json.loads` can turn into an unsafe character: the character itself (controls below
# U+0020 are refused inside a JSON string, and a lone surrogate cannot be UTF-8), or its
# `\uXXXX` escape. Tab and newline escapes match too: a needless but harmless clean.
_RAW_UNSAFE_IN_JSON = re.compile("[\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_ESCAPED_UNSAFE = re.compile(r"\\u(?:00[01]|007[fF]|00[89]|[dD][89a-fA-F]|202[a-eA-E]|206[6-9])")


class TooDeep(ValueError):
    """A JSON text nests containers deeper than `MAX_DEPTH` levels."""

    def __init__(self, limit: int = MAX_DEPTH) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")


def clean(text: str) -> str:
    """`text` with every unsafe character replaced by U+FFFD (a no-op copy-free pass when
    the text is already safe, which is the common case)."""
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(REPLACEMENT, text)


def cut(text: str, limit: int, *, total: int | None = None) -> str:
    """`text` cut to `limit` characters, its head kept and the cut announced.

    `total`: the length of the original when `text` is already a head of it (the marker
    then counts what was cut from the original).
    """
    size = len(text) if total is None else max(total, len(text))
    if size <= limit:
        return text
    keep = max(limit - len(_marker(size)), 0)
    while keep < limit and keep + 1 + len(_marker(size - keep - 1)) <= limit:
        keep += 1  # the count has fewer digits than the size: room for more text
    return f"{text[:keep]}{_marker(size - keep)}"


def _marker(count: int) -> str:
    return f"…[truncated {count} chars]"


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
    """A decoded JSON value with every string (keys too) passed through `clean`."""
    return map_strings(value, clean)


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A decoded JSON value with `change` applied to every string, keys too (in place).

    Iterative on purpose; callers bound the depth with `too_deep` first anyway.
    """
    if isinstance(value, str):
        return change(value)
    root: list[Any] = [value]
    stack: list[tuple[Any, Any]] = [(root, 0)]
    while stack:
        container, key = stack.pop()
        item = container[key]
        if isinstance(item, str):
            container[key] = change(item)
        elif isinstance(item, list):
            stack.extend((item, i) for i in range(len(item)))
        elif isinstance(item, dict):
            keys = {k: change(k) if isinstance(k, str) else k for k in item}
            if any(k != new for k, new in keys.items()):
                item = container[key] = {keys[k]: v for k, v in item.items()}
            stack.extend((item, k) for k in item)
    return root[0]


PairsHook = Callable[[list[tuple[str, Any]]], Any]


def load_json(text: str, *, object_pairs_hook: PairsHook | None = None) -> Any:
    """`json.loads(text)` for a text from outside: the value nests at most `MAX_DEPTH`
    levels and every string in it (keys too) is `clean`.

    Raises `ValueError` like `json.loads`; `TooDeep` (a ValueError) when the value nests
    deeper, whether json's own recursion guard or the depth check finds it. The cleaning
    walk runs only when the text can hold an unsafe character, which is rare.
    """
    try:
        value = json.loads(text, object_pairs_hook=object_pairs_hook)
    except RecursionError:
        raise TooDeep from None
    if too_deep(value):
        raise TooDeep
    return clean_json(value) if _may_decode_unsafe(text) else value


def _may_decode_unsafe(text: str) -> bool:
    """Whether `json.loads(text)` can hold an unsafe character (substring tests first: an
    ASCII text without a `\\u` escape, the usual webhook body, needs no regex at all)."""
    if "\\u" in text and _ESCAPED_UNSAFE.search(text):
        return True
    if text.isascii():
        return "\x7f" in text
    return _RAW_UNSAFE_IN_JSON.search(text) is not None
