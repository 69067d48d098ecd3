"""Guardrails: every rule between the model's arguments and the outside world."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from config import Settings
from models import Alert, Provider
from tests.conftest import SettingsFactory
from tools.errors import Refused
from tools.guardrails import (
    check_method,
    check_report_filename,
    check_scaling,
    normalize_endpoint,
    resolve_service,
)
from tools.reports import MAX_REPORT_CHARS, default_report_name, report_path, write_report

HOSTILE_ENDPOINTS = [
    ("../admin", "'..'"),
    ("/ops/../admin", "'..'"),
    ("/ops/status/..", "'..'"),
    ("//evil.com/ops/x", "'//'"),
    ("/ops//status", "'//'"),
    ("http://evil/ops/status", "URL or scheme"),
    ("https:/ops/status", "URL or scheme"),
    ("javascript:alert(1)", "URL or scheme"),
    ("@evil", "'@'"),
    ("/ops/status@evil.com", "'@'"),
    ("\\\\evil\\ops", "backslash"),
    ("/ops\\..\\admin", "backslash"),
    ("/ops/%2e%2e/admin", "percent-encoding"),
    ("%2e%2e/admin", "percent-encoding"),
    ("/ops%2fstatus", "percent-encoding"),
    ("/ops/%5c..", "percent-encoding"),
    ("/ops/%252e%252e/admin", "percent-encoding"),
    ("/ops/status?x=1", "query strings"),
    ("/ops/status#frag", "query strings"),
    ("/ops/stat\u0075s\u2215x", "non-ASCII"),  # division slash lookalike
    ("/ops/\uff0e\uff0e/admin", "non-ASCII"),  # fullwidth full stops
    ("/ops/ status", "whitespace"),
    ("/ops/status\n", "whitespace"),
    ("/ops/status\x00", "control"),
    ("", "empty"),
    ("/admin", "only paths under /ops/"),
    ("/opsx/status", "only paths under /ops/"),
    ("/ops/", "only paths under /ops/"),
    ("/ops/status/", "only paths under /ops/"),
    ("/ops/sta.tus", "only paths under /ops/"),
    ("x" * 300, "longer than"),
]


@pytest.mark.parametrize(("endpoint", "reason"), HOSTILE_ENDPOINTS)
def test_hostile_endpoint_is_refused_with_a_reason(endpoint: str, reason: str) -> None:
    with pytest.raises(Refused) as caught:
        normalize_endpoint(endpoint)
    assert reason in caught.value.message


@pytest.mark.parametrize(
    ("endpoint", "path"),
    [
        ("status", "/ops/status"),
        ("ops/status", "/ops/status"),
        ("/ops/status", "/ops/status"),
        ("/ops/cache/clear", "/ops/cache/clear"),
        ("metrics", "/ops/metrics"),
        ("/ops/feature_flags/checkout-v2", "/ops/feature_flags/checkout-v2"),
    ],
)
def test_plain_endpoint_is_normalised_under_ops(endpoint: str, path: str) -> None:
    assert normalize_endpoint(endpoint) == path


def test_registered_service_is_found_case_insensitively(settings: Settings) -> None:
    assert resolve_service(settings, "WORKER").name == "worker"


def test_unregistered_service_is_refused_listing_known_services(settings: Settings) -> None:
    with pytest.raises(Refused, match="not registered; registered services: api, worker"):
        resolve_service(settings, "evil.com")


@pytest.mark.parametrize("method", ["PUT", "DELETE", "get", "CONNECT"])
def test_only_get_and_post_are_allowed(method: str) -> None:
    with pytest.raises(Refused, match="use GET or POST"):
        check_method(method, None)


def test_body_is_only_allowed_with_post() -> None:
    with pytest.raises(Refused, match="only allowed with POST"):
        check_method("GET", {"x": 1})
    assert check_method("POST", {"x": 1}) == {"x": 1}


def test_empty_body_with_get_is_ignored() -> None:
    assert check_method("GET", {}) is None


@pytest.fixture
def scaling(make_settings: SettingsFactory) -> Settings:
    return make_settings(scaling_limits="worker|1|5|application,api|2|4|cloud")


@pytest.mark.parametrize("replicas", [0, 6, 100])
def test_scaling_outside_bounds_is_refused_with_the_bounds(
    scaling: Settings, replicas: int
) -> None:
    with pytest.raises(Refused, match=r"outside the allowed range for worker: 1\.\.5"):
        check_scaling(scaling, "worker", replicas)


@pytest.mark.parametrize("replicas", [1, 3, 5])
def test_scaling_within_bounds_is_allowed(scaling: Settings, replicas: int) -> None:
    entry, limit = check_scaling(scaling, "Worker", replicas)
    assert (entry.name, limit.mode) == ("worker", "application")


def test_scaling_without_limits_is_refused(settings: Settings) -> None:
    with pytest.raises(Refused, match="scaling is not configured for worker"):
        check_scaling(settings, "worker", 2)


def test_scaling_an_unregistered_service_is_refused(scaling: Settings) -> None:
    with pytest.raises(Refused, match="not registered"):
        check_scaling(scaling, "db", 2)


@pytest.mark.parametrize(
    "filename",
    [
        "../x",
        "../../etc/passwd",
        "/etc/x",
        "a/b",
        "a\\b",
        "..",
        ".hidden",
        "x\x00.md",
        "report..md",
        "rep ort.md",
        "-rf.md",
        "",
        "é.md",
        "x" * 200,
    ],
)
def test_report_filename_traversal_is_refused(filename: str) -> None:
    with pytest.raises(Refused, match="refused: use a plain name"):
        check_report_filename(filename)


@pytest.mark.parametrize(
    ("filename", "expected"),
    [("db-outage", "db-outage.md"), ("db-outage.md", "db-outage.md"), ("R_1.txt", "R_1.txt.md")],
)
def test_report_filename_gets_md_suffix(filename: str, expected: str) -> None:
    assert check_report_filename(filename) == expected


def _alert(**fields: object) -> Alert:
    values: dict[str, object] = {
        "incident_id": "gcp:0.lhvq5o7xpsf",
        "provider": Provider.GCP,
        "service": "worker",
        "summary": "x",
    }
    values.update(fields)
    return Alert.model_validate(values)


def test_default_report_name_is_utc_stamp_service_and_incident() -> None:
    now = datetime(2025, 3, 4, 5, 6, 7, tzinfo=timezone(timedelta(hours=2)))
    assert default_report_name(_alert(), now) == "20250304T030607Z-worker-gcp_0.lhvq5o7xpsf.md"


def test_default_report_name_replaces_unsafe_characters() -> None:
    now = datetime(2025, 1, 1, tzinfo=UTC)
    alert = _alert(service=None, incident_id="generic:../../etc/passwd x")
    name = default_report_name(alert, now)
    assert name == "20250101T000000Z-unknown-generic_____etc_passwd_x.md"
    assert "/" not in name
    assert ".." not in name


def test_report_path_outside_the_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Refused, match="inside INCIDENTS_DIR"):
        report_path(tmp_path, "../escape.md")


def test_report_is_written_atomically_leaving_no_temp_file(tmp_path: Path) -> None:
    write_report(tmp_path, "r.md", "one")
    path = write_report(tmp_path, "r.md", "two")
    assert path.read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.md"]


def test_report_is_capped_at_256_kib_with_a_marker(tmp_path: Path) -> None:
    path = write_report(tmp_path, "r.md", "# Title\n" + "w" * 1_000_000)
    written = path.read_text()
    assert len(written) <= MAX_REPORT_CHARS == 256 * 1024
    assert written.startswith("# Title\nwww")
    assert written.endswith(" chars]")
    assert "…[truncated " in written
