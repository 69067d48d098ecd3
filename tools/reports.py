"""Incident report files: the default name and the atomic write into INCIDENTS_DIR.

The runtime uses both too (it rewrites the same file with its own sections appended), so
the naming rule and the size cap (CONTRACT §4: a report is cut to 256 KiB with a marker)
live in exactly one place.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from intake.sanitize import cut
from models import Alert
from tools.context import RunContext
from tools.errors import Refused

MAX_REPORT_CHARS = 256 * 1024  # "256 KiB", counted in characters like every cut

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]|\.{2,}")


def _safe_part(text: str, limit: int) -> str:
    return _UNSAFE.sub("_", text)[:limit] or "_"


def default_report_name(alert: Alert, now: datetime) -> str:
    """`YYYYMMDDTHHMMSSZ-<service>-<incident>.md`, unsafe characters replaced by `_`."""
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    service = _safe_part(alert.service or "unknown", 63)
    incident = _safe_part(alert.incident_id, 120)
    return f"{stamp}-{service}-{incident}.md"


def promised_report_name(ctx: RunContext, now: datetime, requested: str | None = None) -> str:
    """The run's report file name, fixed the first time it is promised: by a page (whose
    `report_file` must name the file that will hold the findings) or by a report written.
    Before that, the model's safe `requested` name is taken; after, the promise stands.
    Each occurrence gets its own file: a name an earlier occurrence's report has gets
    `-occurrence-<n>` before its extension."""
    if ctx.report_filename is None:
        name = requested or default_report_name(ctx.alert, now)
        if name in ctx.earlier_reports:
            stem, dot, extension = name.rpartition(".")
            name = (
                f"{stem}-occurrence-{ctx.occurrence}.{extension}"
                if dot
                else f"{name}-occurrence-{ctx.occurrence}"
            )
        ctx.report_filename = name
    return ctx.report_filename


def report_path(directory: Path, filename: str) -> Path:
    """`directory/filename`, refused unless `filename` is one plain name (no separator, not
    `.` or `..`, no NUL). No path is resolved: writes replace the name itself (`os.replace`
    never follows a link at the target), and resolving cost more than the write."""
    if filename in ("", ".", "..") or "/" in filename or "\x00" in filename:
        raise Refused(f"report filename {filename[:80]!r} does not stay inside INCIDENTS_DIR")
    return directory / filename


def capped(report: str) -> str:
    """`report` cut to `MAX_REPORT_CHARS`, its head kept and the cut announced."""
    return cut(report, MAX_REPORT_CHARS)


def write_report(directory: Path, filename: str, content: str, *, fsync: bool = True) -> Path:
    """Write `content`, `capped`, to `directory/filename` atomically (temp file +
    os.replace).

    Readers see the old report or the new one, never half of one. `fsync=False` leaves the
    data to the kernel (a disk takes a few thousand fsyncs a second: too few for a shutdown
    that reports a long queue; the caller syncs once at the end). Blocking: call it through
    `asyncio.to_thread` from async code.
    """
    content = capped(content)
    target = report_path(directory, filename)
    fd, temp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=".md")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(content)
            handle.flush()
            if fsync:
                os.fsync(handle.fileno())
        os.chmod(temp, 0o644)  # mkstemp makes 0600; reports are read by operators too
        os.replace(temp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return target
