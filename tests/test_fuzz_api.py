"""Schemathesis against the app's own /openapi.json: no 5xx, every response as documented.

The app runs under uvicorn on loopback (tests/fakes/background.py) with a fake LLM,
PagerDuty and services, so nothing leaves the machine. Every operation is called with the
Bearer token (which the webhook accepts too), a bounded number of examples each.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error, response_schema_conformance

from config import Settings, load_settings
from main import create_app
from tests.conftest import TEST_SECRETS
from tests.fakes.background import stack_in_thread

MAX_EXAMPLES = 50
AUTH = {"Authorization": f"Bearer {TEST_SECRETS['ops_auth_token']}"}


@pytest.fixture(scope="module")
def base_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("fuzz-api")
    prompt = workdir / "prompt.md"
    prompt.write_text("# Fuzz prompt\nDiagnose through /ops/*.\n")

    def build(urls: dict[str, Any]) -> Settings:
        return _settings(prompt, workdir / "incidents", urls)

    with pytest.MonkeyPatch.context() as patch:
        for name in Settings.model_fields:
            patch.delenv(name.upper(), raising=False)
        with stack_in_thread(build) as stack:
            yield stack.base_url


def _settings(prompt: Path, incidents: Path, urls: dict[str, Any]) -> Settings:
    return load_settings(
        **TEST_SECRETS,
        **urls,
        sre_prompt_path=str(prompt),
        incidents_dir=str(incidents),
        log_level="WARNING",
    )


# The document the running app serves; building it needs no valid configuration (the
# served /openapi.json is the same: test_openapi_served_is_the_one_fuzzed checks it).
_UNCHECKED = Settings.model_construct(**{k: SecretStr(v) for k, v in TEST_SECRETS.items()})
schema = schemathesis.openapi.from_dict(create_app(_UNCHECKED).openapi())


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_never_answers_5xx_and_matches_its_schema(
    case: schemathesis.Case, base_url: str
) -> None:
    case.call_and_validate(
        base_url=base_url,
        headers=AUTH,
        checks=[not_a_server_error, response_schema_conformance],
        timeout=10,
    )


def test_openapi_served_is_the_one_fuzzed(base_url: str) -> None:
    served = httpx.get(f"{base_url}/openapi.json", timeout=10).json()
    assert served == schema.raw_schema
