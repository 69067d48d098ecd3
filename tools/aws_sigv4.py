"""AWS credentials from botocore's standard chain, and SigV4 signing of requests that are
then sent through the runtime's own async httpx client.

Only botocore's credential providers and `SigV4Auth` are used, not its HTTP stack: the
calls stay on the shared, traced httpx client. Importing this module needs botocore
(requirements-aws.txt); `tools.cloud` imports it only with CLOUD_PROVIDER=aws. The chain
(environment, shared files, web identity, ECS task role, EC2 instance profile) may block on
files or the metadata endpoints, so it runs in a worker thread; refreshable credentials
refresh inside `get_frozen_credentials`, also in a thread.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import botocore.exceptions  # type: ignore[import-untyped]  # botocore ships no type hints
import botocore.session  # type: ignore[import-untyped]
from botocore.auth import SigV4Auth  # type: ignore[import-untyped]
from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

NO_CREDENTIALS = (
    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), "
    "or run with an IAM role (ECS task role, instance profile)"
)


class AwsCredentialsError(Exception):
    """No credentials, or they could not be loaded or refreshed; safe to show."""


def load_credentials() -> Any:
    """botocore's credential chain (blocking: run it in a thread)."""
    try:
        credentials = botocore.session.Session().get_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsCredentialsError(f"could not load AWS credentials: {exc}") from exc
    if credentials is None:
        raise AwsCredentialsError(NO_CREDENTIALS)
    return credentials


def _frozen(credentials: Any) -> Any:
    try:
        return credentials.get_frozen_credentials()
    except botocore.exceptions.BotoCoreError as exc:
        raise AwsCredentialsError(f"could not refresh AWS credentials: {exc}") from exc


def sign(
    credentials: Any, *, service: str, region: str, url: str, body: bytes, headers: dict[str, str]
) -> dict[str, str]:
    """`headers` plus the SigV4 `X-Amz-Date`, session token and `Authorization` for a POST."""
    request = AWSRequest(method="POST", url=url, data=body, headers=headers)
    SigV4Auth(credentials, service, region).add_auth(request)
    return {str(name): str(value) for name, value in request.headers.items()}


class AwsSigner:
    """Resolves credentials once (lazily, single-flight) and signs requests for one region."""

    def __init__(self, *, region: str, load: Callable[[], Any] = load_credentials) -> None:
        self._region = region
        self._load = load
        self._credentials: Any = None
        self._lock = asyncio.Lock()

    async def check(self) -> None:
        """Raise `AwsCredentialsError` unless usable credentials can be obtained now."""
        await asyncio.to_thread(_frozen, await self._resolved())

    async def headers(
        self, *, service: str, url: str, body: bytes, headers: dict[str, str]
    ) -> dict[str, str]:
        frozen = await asyncio.to_thread(_frozen, await self._resolved())
        return sign(
            frozen, service=service, region=self._region, url=url, body=body, headers=headers
        )

    async def _resolved(self) -> Any:
        async with self._lock:
            if self._credentials is None:
                self._credentials = await asyncio.to_thread(self._load)
            return self._credentials
