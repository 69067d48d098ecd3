"""Plain-terminal output for the demo: headings, progress lines and a table.

ANSI colour only when the stream is a TTY, so piped output and test captures stay plain.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO

_CODES = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33", "cyan": "36"}


class Console:
    """Writes lines to `out`, coloured only on a terminal."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        isatty = getattr(out, "isatty", None)
        self._colour = bool(isatty and isatty())

    def style(self, text: str, *styles: str) -> str:
        if not self._colour or not styles:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\033[{codes}m{text}\033[0m"

    def line(self, text: str = "", *styles: str) -> None:
        self._out.write(self.style(text, *styles) + "\n")
        self._out.flush()

    def heading(self, text: str) -> None:
        self.line()
        self.line(f"== {text} " + "=" * max(0, 72 - len(text)), "bold", "cyan")

    def block(self, text: str) -> None:
        """A multi-line text (a report), fenced so it stands apart."""
        self.line("-" * 76, "dim")
        for row in text.rstrip("\n").splitlines():
            self.line(row)
        self.line("-" * 76, "dim")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
        self.line("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)), "bold")
        self.line("  ".join("-" * w for w in widths))
        for row in rows:
            self.line("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)))


def ok_mark(console: Console, ok: bool) -> str:
    return console.style("ok", "green") if ok else console.style("error", "red")


def describe_call(name: str, arguments: Any) -> str:
    """A one-line summary of a tool call's arguments."""
    if not isinstance(arguments, dict):
        return _cut(str(arguments))
    if name == "call_ops_endpoint":
        method = str(arguments.get("method", "GET")).upper()
        return f"{method} {arguments.get('service')} {arguments.get('endpoint')}"
    if name == "escalate_pagerduty":
        return _cut(f"{arguments.get('severity', '-')}: {arguments.get('summary')}", 44)
    if name == "write_incident_report":
        return f"{len(str(arguments.get('content', '')))} chars of markdown"
    return _cut(json.dumps(arguments, ensure_ascii=False, sort_keys=True))


def _cut(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
