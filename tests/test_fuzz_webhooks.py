"""Property: whatever arrives at `POST /webhook/{provider}`, the answer is never a 5xx.

Random bytes, random JSON (nested, unicode, numbers, huge strings within the body limit)
and provider-shaped JSON with random values go to every provider's webhook on the real app
(under uvicorn on loopback, lifespan running, fake LLM/PagerDuty/services: an accepted
alert's run stays local). A 4xx carries an `error` field; a 202 is a `WebhookResponse`.
Hostile text (lone surrogates, controls, bidi overrides) that is accepted leaves every
alert view answering.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config import Settings, load_settings
from models import Provider, WebhookResponse
from tests.conftest import TEST_SECRETS
from tests.fakes.background import stack_in_thread

PROVIDERS = [p.value for p in Provider]
BODY_LIMIT = 64 * 1024  # WEBHOOK_MAX_BODY_BYTES here, so huge strings stay cheap
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=25,
)
# Keys the parsers look at, so random values reach past the first shape check.
KNOWN_KEYS = [
    "version",
    "incident",
    "incident_id",
    "summary",
    "state",
    "service",
    "priority",
    "severity",
    "labels",
    "url",
    "started_at",
    "alerts",
    "status",
    "commonLabels",
    "annotations",
    "startsAt",
    "fingerprint",
    "Type",
    "Message",
    "MessageId",
    "TopicArn",
    "SubscribeURL",
    "AlarmName",
    "NewStateValue",
    "Trigger",
    "Dimensions",
    "id",
    "title",
    "alert_type",
    "tags",
    "event_type",
    "date",
    "issueUrl",
    "condition_name",
    "resource",
    "metadata",
    "user_labels",
    "ended_at",
    "policy_name",
]
shaped = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS), inner, max_size=8)
    ),
    max_leaves=30,
)
# Drawn small and built in the test: hypothesis would otherwise repr the huge value.
huge_sizes = st.integers(min_value=1_000, max_value=BODY_LIMIT // 6 - 200)
huge_keys = st.sampled_from(["summary", "incident", "Message", "title"])
huge_chars = st.sampled_from(["x", "é", "\u2028", "\\", '"', "\U0001f525"])
# Every code point, lone surrogates included (sent as `\ud800` escapes), and the classics.
hostile_text = st.text(
    st.characters(codec=None)
    | st.sampled_from(["\x00", "\x1b", "\u202e", "\x85", "\ud800", "\udfff", "\x7f"]),
    max_size=30,
)
hostile_shaped = st.recursive(
    st.none() | st.integers() | hostile_text,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KNOWN_KEYS) | hostile_text, inner, max_size=8)
    ),
    max_leaves=30,
)
OPS = {"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"}


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    workdir = tmp_path_factory.mktemp("fuzz-webhooks")
    prompt = workdir / "prompt.md"
    prompt.write_text("# Fuzz prompt\nDiagnose through /ops/*.\n")

    def build(urls: dict[str, Any]) -> Settings:
        return load_settings(
            **TEST_SECRETS,
            **urls,
            sre_prompt_path=str(prompt),
            incidents_dir=str(workdir / "incidents"),
            webhook_max_body_bytes=BODY_LIMIT,
            log_level="WARNING",
        )

    with pytest.MonkeyPatch.context() as patch:
        for name in Settings.model_fields:
            patch.delenv(name.upper(), raising=False)
        with (
            stack_in_thread(build) as stack,
            httpx.Client(
                base_url=stack.base_url,
                params={"auth_token": TEST_SECRETS["ops_auth_token"]},
                timeout=30,
            ) as http,
        ):
            yield http


def post(client: httpx.Client, provider: str, content: bytes) -> httpx.Response:
    response = client.post(
        f"/webhook/{provider}", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code < 500, (provider, response.status_code, response.text[:500])
    body = response.json()
    if response.status_code == 202:
        WebhookResponse.model_validate(body)
    else:
        assert 400 <= response.status_code < 500, response.status_code
        assert "error" in body, body
    return response


def encoded(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode()


@FUZZ
@given(provider=st.sampled_from(PROVIDERS), content=st.binary(max_size=2_000))
def test_random_bytes_never_get_a_server_error(
    client: httpx.Client, provider: str, content: bytes
) -> None:
    post(client, provider, content)


@FUZZ
@given(provider=st.sampled_from(PROVIDERS), value=json_values | shaped)
def test_random_json_never_gets_a_server_error(
    client: httpx.Client, provider: str, value: Any
) -> None:
    post(client, provider, encoded(value))


@settings(FUZZ, max_examples=150)
@given(provider=st.sampled_from(PROVIDERS), value=hostile_shaped)
def test_hostile_text_never_gets_a_server_error_nor_breaks_the_alert_views(
    client: httpx.Client, provider: str, value: Any
) -> None:
    response = post(client, provider, json.dumps(value).encode())
    if response.status_code != 202:
        return
    assert client.get("/alerts", headers=OPS).status_code == 200
    for result in response.json()["alerts"]:
        detail = client.get(f"/alerts/{quote(result['incident_id'], safe='')}", headers=OPS)
        assert detail.status_code in (200, 404), detail.text  # 404: ignored, never stored
        detail.text.encode("utf-8")


@settings(FUZZ, max_examples=40)
@given(provider=st.sampled_from(PROVIDERS), size=huge_sizes, key=huge_keys, char=huge_chars)
def test_huge_strings_within_the_body_limit_never_get_a_server_error(
    client: httpx.Client, provider: str, size: int, key: str, char: str
) -> None:
    content = encoded({key: char * size, "incident_id": "big", "summary": char * (size // 2)})
    assert len(content) <= BODY_LIMIT
    post(client, provider, content)


@settings(FUZZ, max_examples=20)
@given(provider=st.sampled_from(PROVIDERS), extra=st.integers(min_value=1, max_value=5_000))
def test_bodies_over_the_limit_get_413(client: httpx.Client, provider: str, extra: int) -> None:
    response = post(client, provider, b'"' + b"x" * (BODY_LIMIT + extra) + b'"')
    assert response.status_code == 413
