"""Compaction of log entries and time series: grouping, statistics, and the size budget."""

from __future__ import annotations

import json

from tools.cloud_compact import (
    LogRecord,
    Series,
    compact_logs,
    compact_metrics,
    downsample,
    normalise,
)


def test_normalise_collapses_numbers_uuids_and_hex_ids() -> None:
    message = (
        "req 7f9c2a1e-4b3d-4c1a-9e2f-0a1b2c3d4e5f on 0xdeadbeef trace 4bf92f3577b34da6 took 12.5 ms"
    )
    assert normalise(message) == "req <uuid> on <hex> trace <hex> took <n> ms"


def test_logs_group_repeats_and_list_the_newest_samples_first() -> None:
    records = [
        LogRecord(f"2024-05-01T10:0{i}:00Z", "ERROR", f"timeout after {i}00 ms") for i in range(4)
    ] + [LogRecord("2024-05-01T10:09:00Z", "INFO", "ok")]
    result = compact_logs(records, max_chars=8000, context={"provider": "test"})
    assert result["provider"] == "test"
    assert result["count"] == 5
    assert result["top_messages"][0] == {
        "message": "timeout after <n> ms",
        "count": 4,
        "example": "timeout after 300 ms",
        "last_seen": "2024-05-01T10:03:00Z",
    }
    assert result["samples"][0]["message"] == "ok"


def test_no_entries_say_so() -> None:
    assert compact_logs([], max_chars=8000, context={}) == {
        "count": 0,
        "note": "no log entries matched in this window",
    }


def test_large_results_are_shrunk_to_fit_the_budget() -> None:
    records = [
        LogRecord(
            f"2024-05-01T10:00:{i % 60:02d}Z",
            "ERROR",
            f"distinct failure kind {chr(65 + i % 26)}{chr(65 + i // 26 % 26)} " + "x" * 2000,
        )
        for i in range(500)
    ]
    result = compact_logs(records, max_chars=2000, context={})
    assert len(json.dumps(result, ensure_ascii=False)) <= 1800
    assert result["count"] == 500


def test_downsample_keeps_at_most_the_limit_with_bucket_means() -> None:
    points = [(f"t{i:03d}", float(i)) for i in range(90)]
    sampled = downsample(points, 30)
    assert len(sampled) == 30
    assert sampled[0] == ("t002", 1.0)


def test_metrics_give_statistics_per_series_and_fit_the_budget() -> None:
    series = [
        Series({"instance": str(n)}, [(f"2024-05-01T10:{m:02d}:00Z", m * 1.5) for m in range(60)])
        for n in range(20)
    ]
    result = compact_metrics(series, max_chars=3000, context={"provider": "test"})
    assert len(json.dumps(result)) <= 2800
    assert result["series_count"] == 20
    first = result["series"][0]
    assert (first["min"], first["max"], first["avg"], first["last"]) == (0.0, 88.5, 44.25, 88.5)
    assert result["omitted_series"] == 20 - len(result["series"])


def test_metrics_without_points_explain_what_to_check() -> None:
    result = compact_metrics([Series({}, [])], max_chars=8000, context={})
    assert result["series_count"] == 0
    assert "check metric_type" in result["note"]
