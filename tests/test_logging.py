"""Log lines: one JSON object each, with the trace id, and never a credential."""

from __future__ import annotations

import json
import logging

import pytest

from telemetry import configure_logging, trace_id_var

SECRET = "ops-token-0123456789abcdef"


def emitted(capsys: pytest.CaptureFixture[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]


def test_access_log_query_token_is_redacted_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", secrets=[SECRET])
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d',
        "127.0.0.1:5",
        "POST",
        f"/webhook/gcp?auth_token={SECRET}",
        "1.1",
        202,
    )
    [line] = emitted(capsys)
    assert line["message"] == '127.0.0.1:5 - "POST /webhook/gcp?auth_token=[REDACTED] HTTP/1.1" 202'
    assert line["logger"] == "uvicorn.access"


def test_uvicorn_colour_twin_of_the_message_is_dropped(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logging.getLogger("uvicorn.error").info(
        "Started server process [%d]", 7, extra={"color_message": "Started [\x1b[36m%d\x1b[0m]"}
    )
    [line] = emitted(capsys)
    assert "color_message" not in line


@pytest.mark.parametrize(
    "message",
    [
        f"calling with Authorization: Bearer {SECRET}",
        "Basic dXNlcjpwYXNzd29yZA== was sent",
        f"the token is {SECRET}, do not tell",
        "https://hooks.example/x?api_key=abc123&y=1",
    ],
)
def test_credentials_never_reach_a_log_line(
    capsys: pytest.CaptureFixture[str], message: str
) -> None:
    configure_logging("INFO", secrets=[SECRET])
    logging.getLogger("agent").warning(message)
    [line] = emitted(capsys)
    assert SECRET not in str(line)
    assert "[REDACTED]" in str(line["message"])
    assert "dXNlcjpwYXNzd29yZA" not in str(line)
    assert "abc123" not in str(line)


def test_ordinary_messages_and_fields_are_untouched(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", secrets=[SECRET])
    token = trace_id_var.set("trace-42")
    try:
        logging.getLogger("intake").info("alert %s queued", "gcp:0.x", extra={"incident_id": "i-1"})
    finally:
        trace_id_var.reset(token)
    [line] = emitted(capsys)
    assert line["message"] == "alert gcp:0.x queued"
    assert line["trace_id"] == "trace-42"
    assert line["incident_id"] == "i-1"
    assert line["level"] == "INFO"
    assert "timestamp" in line


def test_reconfiguring_replaces_only_our_own_handler() -> None:
    foreign = logging.NullHandler()
    root = logging.getLogger()
    root.addHandler(foreign)
    try:
        configure_logging("INFO")
        configure_logging("DEBUG")
        ours = [h for h in root.handlers if h.get_name() == "sre-agent-json"]
        assert len(ours) == 1
        assert foreign in root.handlers
        assert root.level == logging.DEBUG
    finally:
        root.removeHandler(foreign)
        configure_logging("INFO")


def test_sns_subscribe_url_stays_usable(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", secrets=[SECRET])
    url = "https://sns.us-west-2.amazonaws.com/?Action=ConfirmSubscription&Token=2336412f37fb6"
    logging.getLogger("intake.parsers.cloudwatch").warning("confirm this: %s", url)
    [line] = emitted(capsys)
    assert line["message"] == f"confirm this: {url}"
