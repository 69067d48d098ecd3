"""Compaction of cloud log entries and time series into summaries the model can read.

Raw API answers are far larger than TOOL_OUTPUT_MAX_CHARS and mostly repetition, so the
cloud tools return summaries instead: logs grouped by normalised message (digits, UUIDs and
hex ids collapsed) with counts and a few newest samples; metrics as per-series statistics
with at most 30 (bucket-mean) points. Each summary is shrunk step by step until its JSON
fits the budget, so the executor's blunt cut is a last resort, not the normal case.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from tools.cloud_http import dumps_compact

MAX_SERIES_POINTS = 30
NORMALISED_CHARS = 200
# Room left for the executor's wrappers (e.g. the read cache's `{"cached": true, ...}`).
WRAPPER_MARGIN = 200

_UUID = re.compile(
    r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
)
_HEX = re.compile(
    r"\b0x[0-9a-fA-F]+\b|\b(?=[0-9a-fA-F]*[a-fA-F])(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"
)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class LogRecord:
    """One log entry, provider-neutral."""

    timestamp: str  # RFC 3339, UTC
    severity: str  # Cloud Logging severity names; DEFAULT when unknown
    message: str


@dataclass(frozen=True, slots=True)
class Series:
    """One time series, provider-neutral; points oldest first."""

    labels: dict[str, str]
    points: list[tuple[str, float]]  # (RFC 3339 timestamp, value)


@dataclass(frozen=True, slots=True)
class _LogShape:
    top: int
    samples: int
    chars: int


@dataclass(frozen=True, slots=True)
class _MetricShape:
    series: int
    points: int


_LOG_SHAPES = (
    _LogShape(10, 5, 300),
    _LogShape(8, 3, 160),
    _LogShape(5, 2, 100),
    _LogShape(3, 1, 60),
    _LogShape(3, 0, 40),
)
_METRIC_SHAPES = (
    _MetricShape(10, MAX_SERIES_POINTS),
    _MetricShape(5, MAX_SERIES_POINTS),
    _MetricShape(5, 15),
    _MetricShape(3, 10),
    _MetricShape(3, 0),
)


def normalise(message: str) -> str:
    """The message with UUIDs, hex ids and numbers collapsed, so repeats group together."""
    text = _UUID.sub("<uuid>", message)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _clip(_SPACE.sub(" ", text).strip(), NORMALISED_CHARS)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


def budget(max_chars: int) -> int:
    """The characters a summary may use within TOOL_OUTPUT_MAX_CHARS."""
    return max(max_chars - WRAPPER_MARGIN, max_chars // 2)


# ---------------------------------------------------------------- logs


def compact_logs(
    records: Sequence[LogRecord], *, max_chars: int, context: dict[str, Any]
) -> dict[str, Any]:
    """Summary of `records` (any order) that fits `max_chars`, led by `context`."""
    newest = sorted(records, key=lambda r: r.timestamp, reverse=True)
    groups = _group(newest)
    result: dict[str, Any] = {}
    for shape in _LOG_SHAPES:
        result = {**context, **_log_summary(newest, groups, shape)}
        if len(dumps_compact(result)) <= budget(max_chars):
            break
    return result


def _group(newest: Sequence[LogRecord]) -> dict[str, list[LogRecord]]:
    groups: dict[str, list[LogRecord]] = {}
    for record in newest:
        groups.setdefault(normalise(record.message), []).append(record)
    return groups


def _log_summary(
    newest: Sequence[LogRecord], groups: dict[str, list[LogRecord]], shape: _LogShape
) -> dict[str, Any]:
    if not newest:
        return {"count": 0, "note": "no log entries matched in this window"}
    severities = Counter(r.severity for r in newest)
    top = sorted(groups.items(), key=lambda item: (-len(item[1]), item[1][0].timestamp))
    return {
        "count": len(newest),
        "first_timestamp": newest[-1].timestamp,
        "last_timestamp": newest[0].timestamp,
        "by_severity": dict(severities.most_common()),
        "top_messages": [_top_entry(key, group, shape) for key, group in top[: shape.top]],
        "samples": [_sample(r, shape.chars) for r in newest[: shape.samples]],
    }


def _top_entry(key: str, group: list[LogRecord], shape: _LogShape) -> dict[str, Any]:
    return {
        "message": _clip(key, shape.chars),
        "count": len(group),
        "example": _clip(group[0].message, shape.chars),
        "last_seen": group[0].timestamp,
    }


def _sample(record: LogRecord, chars: int) -> dict[str, str]:
    return {
        "timestamp": record.timestamp,
        "severity": record.severity,
        "message": _clip(record.message, chars),
    }


# ---------------------------------------------------------------- metrics


def compact_metrics(
    series: Sequence[Series], *, max_chars: int, context: dict[str, Any]
) -> dict[str, Any]:
    """Per-series statistics and a downsampled series that fit `max_chars`."""
    kept = [s for s in series if s.points]
    if not kept:
        note = "no data points: check metric_type and that the service emitted it in the window"
        return {**context, "series_count": 0, "note": note}
    result: dict[str, Any] = {}
    for shape in _METRIC_SHAPES:
        result = {**context, **_metric_summary(kept, shape)}
        if len(dumps_compact(result)) <= budget(max_chars):
            break
    return result


def _metric_summary(series: Sequence[Series], shape: _MetricShape) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "series_count": len(series),
        "series": [_series_entry(s, shape.points) for s in series[: shape.series]],
    }
    if len(series) > shape.series:
        summary["omitted_series"] = len(series) - shape.series
    return summary


def _series_entry(series: Series, points: int) -> dict[str, Any]:
    values = [v for _, v in series.points]
    entry: dict[str, Any] = {
        "labels": series.labels,
        "points": len(values),
        "min": _round(min(values)),
        "max": _round(max(values)),
        "avg": _round(sum(values) / len(values)),
        "last": _round(values[-1]),
    }
    if points:
        entry["series"] = [[t, _round(v)] for t, v in downsample(series.points, points)]
    return entry


def downsample(points: Sequence[tuple[str, float]], limit: int) -> list[tuple[str, float]]:
    """At most `limit` points: consecutive buckets, each its last timestamp and mean value."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / limit)
    return [_bucket(points[i : i + size]) for i in range(0, len(points), size)]


def _bucket(points: Iterable[tuple[str, float]]) -> tuple[str, float]:
    chunk = list(points)
    return chunk[-1][0], sum(v for _, v in chunk) / len(chunk)


def _round(value: float) -> float:
    if not math.isfinite(value):
        return value
    return float(f"{value:.4g}")
