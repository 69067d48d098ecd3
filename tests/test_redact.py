"""Redaction: configured secrets and common credential formats never survive."""

from __future__ import annotations

import json

import pytest

from tools.redact import REDACTED, Redactor

SECRET = "ops-token-0123456789abcdef"


@pytest.fixture
def redactor() -> Redactor:
    return Redactor([SECRET, "pd-rest-token-0123456789", ""])


def test_configured_secret_is_replaced_whole(redactor: Redactor) -> None:
    assert redactor.redact(f"token was {SECRET}!") == f"token was {REDACTED}!"


def test_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor(["abcdef", "abcdef-longer-secret"])
    assert redactor.redact("x abcdef-longer-secret y") == f"x {REDACTED} y"


def test_secret_escaped_inside_json_is_replaced() -> None:
    secret = 'pa"ss\\word-123'
    text = json.dumps({"note": f"value {secret}"})
    assert secret not in json.loads(Redactor([secret]).redact(text))["note"]


def test_no_secrets_configured_still_redacts_patterns() -> None:
    assert Redactor([]).redact("Authorization: Bearer abcdef123456") == (
        f"Authorization: Bearer {REDACTED}"
    )


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("Authorization: Bearer abc.def-ghi_123", "abc.def-ghi_123"),
        ("authorization: bearer abc.def-ghi_123", "abc.def-ghi_123"),
        ("Authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
        ("curl -H 'Authorization: Token token=y_abc123'", "y_abc123"),
        ("header was Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("sent bearer eyJhbGciOi.x.y to upstream", "eyJhbGciOi.x.y"),
        ('{"password": "hunter2"}', "hunter2"),
        ('{"db_password": "hunter2", "user": "app"}', "hunter2"),
        ('{"Secret": "s3cr3t with \\"quotes\\""}', "s3cr3t"),
        ('{"api_key": "k-123"}', "k-123"),
        ('{"apiKey": "k-123"}', "k-123"),
        ('{"x-api-key": "k-123"}', "k-123"),
        ('{"access_token": "at-1"}', "at-1"),
        ('{"Authorization": "Bearer zzz"}', "zzz"),
        ("DB_PASSWORD=hunter2 other=1", "hunter2"),
        ("password: hunter2", "hunter2"),
        ("GET /cb?token=abc123&x=1", "abc123"),
        ("key sk-proj-abcdefghijklmnop1234", "sk-proj-abcdefghijklmnop1234"),
        ("AKIAIOSFODNN7EXAMPLE used", "AKIAIOSFODNN7EXAMPLE"),
        (
            "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
        ("github_pat_11ABCDEFG0123456789_abcdefghij", "github_pat_11ABCDEFG0123456789_abcdefghij"),
        ("xoxb-1234567890-abcdefghij", "xoxb-1234567890-abcdefghij"),
        ("AIzaSyA-abcdefghijklmnopqrstuvwxyz012345", "AIzaSyA-abcdefghijklmnopqrstuvwxyz012345"),
        (
            "jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.c2lnbmF0dXJl end",
            "eyJzdWIiOiIxMjM0In0",
        ),
        ("db at postgres://app:hunter2@db.internal:5432/x", "hunter2"),
        ("https://user:pa55@example.com/path", "pa55"),
    ],
)
def test_credential_formats_are_redacted(redactor: Redactor, text: str, leak: str) -> None:
    redacted = redactor.redact(text)
    assert leak not in redacted
    assert REDACTED in redacted


def test_pem_private_key_block_is_redacted(redactor: Redactor) -> None:
    pem = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\nIBAAKC\n-----END RSA PRIVATE KEY-----"
    assert redactor.redact(f"a {pem} b") == f"a {REDACTED} b"


def test_cut_off_pem_block_is_redacted_to_the_end(redactor: Redactor) -> None:
    assert redactor.redact("k: -----BEGIN PRIVATE KEY-----\nMIIEvQIB") == f"k: {REDACTED}"


def test_pem_inside_json_string_is_redacted(redactor: Redactor) -> None:
    text = json.dumps({"k": "-----BEGIN EC PRIVATE KEY-----\nabc\n-----END EC PRIVATE KEY-----"})
    assert json.loads(redactor.redact(text)) == {"k": REDACTED}


@pytest.mark.parametrize(
    "text",
    [
        "basic health check passed",
        '{"tokens": {"input": 10, "output": 5}}',
        '{"token_usage": {"total": 15}}',
        "https://example.com/path",
        "status healthy, latency p99 180 ms",
    ],
)
def test_ordinary_text_is_left_alone(redactor: Redactor, text: str) -> None:
    assert redactor.redact(text) == text


def test_redaction_is_idempotent(redactor: Redactor) -> None:
    once = redactor.redact(f'Authorization: Bearer {SECRET} {{"password": "x"}} token=abc')
    assert redactor.redact(once) == once


def test_a_megabyte_of_hostile_input_is_redacted_without_catastrophic_backtracking(
    redactor: Redactor,
) -> None:
    # Near-misses for every pattern, repeated: a nested quantifier would never finish.
    chunk = (
        '"password" "aaaa Bearer  Basic  -----BEGIN X eyJaaaa.eyJ ' + "a" * 50 + " https://a:"
        '"x_token": 1, AKIA sk- xoxb %2e @ a:b '
    )
    text = chunk * (1_048_576 // len(chunk) + 1)
    text += f" {SECRET}"
    redacted = redactor.redact(text)
    assert SECRET not in redacted
    assert len(redacted) > 1_000_000
