"""Cloud API calls: transport failures and error bodies become readable `CloudError`s."""

from __future__ import annotations

import httpx
import pytest

from tools.cloud_http import Api, CloudError, request_json

API = Api(
    name="Cloud Logging",
    permission_fix="grant roles/logging.viewer",
    not_found_fix="check GCP_PROJECT_ID",
    credentials_fix="check credentials",
)


async def call(handler: httpx.MockTransport) -> dict[str, object]:
    async with httpx.AsyncClient(transport=handler) as http:
        return await request_json(http, API, "GET", "https://logging.example/v2/x")


def raising(exc: Exception) -> httpx.MockTransport:
    def handler(_request: httpx.Request) -> httpx.Response:
        raise exc

    return httpx.MockTransport(handler)


async def test_timeout_is_retryable_and_says_so() -> None:
    with pytest.raises(CloudError) as caught:
        await call(raising(httpx.ReadTimeout("slow")))
    assert caught.value.result() == {
        "error": "Cloud Logging did not answer in time (ReadTimeout): try again, or ask for a "
        "shorter window",
        "retryable": True,
    }


async def test_unreachable_api_names_the_failure() -> None:
    with pytest.raises(CloudError, match=r"^could not reach Cloud Logging: ConnectError$"):
        await call(raising(httpx.ConnectError("refused")))


async def test_html_error_page_is_not_echoed() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(502, text="<html>bad</html>"))
    with pytest.raises(CloudError) as caught:
        await call(transport)
    assert caught.value.message == (
        "Cloud Logging is unavailable (Cloud Logging HTTP 502): try again shortly."
    )


async def test_success_without_a_json_object_is_an_error() -> None:
    transport = httpx.MockTransport(lambda r: httpx.Response(200, json=[1, 2]))
    with pytest.raises(CloudError, match="without a JSON object"):
        await call(transport)
