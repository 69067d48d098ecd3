"""The seam for read-only cloud log and metric queries, and the factory that picks a provider.

`cloud_tools_for(settings, http)` returns the implementation for `CLOUD_PROVIDER`:
`GcpCloudTools` (Cloud Logging/Monitoring), `AwsCloudTools` (CloudWatch Logs/metrics) or
`NotConfiguredCloud`. Providers are imported only when chosen, so botocore is needed only
with `CLOUD_PROVIDER=aws`; without it the AWS tools answer with an error saying what to
install instead of failing the start (credentials are not needed to start either).

An implementation receives already validated arguments whose `service` is the registered
name, and returns a JSON-able dict; a dict with an `"error"` key is a failed query.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Protocol

from tools.arguments import QueryLogsArgs, QueryMetricsArgs

if TYPE_CHECKING:
    import httpx

    from config import Settings
    from tools.context import RunContext

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "cloud provider not configured: set CLOUD_PROVIDER=gcp or aws"
BOTOCORE_MISSING = (
    "CLOUD_PROVIDER=aws needs botocore, which is not installed: pip install -r requirements-aws.txt"
)


class CloudTools(Protocol):
    async def query_logs(self, args: QueryLogsArgs, ctx: RunContext) -> dict[str, Any]: ...

    async def query_metrics(self, args: QueryMetricsArgs, ctx: RunContext) -> dict[str, Any]: ...

    async def probe(self) -> tuple[bool, str]:
        """For `/ops/health`: can credentials be obtained and the API be read? Never raises."""
        ...


class UnavailableCloud:
    """Every query and the probe answer one fixed reason (not configured, not installed)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    async def query_logs(self, args: QueryLogsArgs, ctx: RunContext) -> dict[str, Any]:
        return {"error": self.reason}

    async def query_metrics(self, args: QueryMetricsArgs, ctx: RunContext) -> dict[str, Any]:
        return {"error": self.reason}

    async def probe(self) -> tuple[bool, str]:
        return False, self.reason


class NotConfiguredCloud(UnavailableCloud):
    """The default: every query answers that no cloud provider is configured."""

    def __init__(self) -> None:
        super().__init__(NOT_CONFIGURED)


def cloud_tools_for(settings: Settings, http: httpx.AsyncClient) -> CloudTools:
    """The cloud tools for `settings.cloud_provider`, sharing the runtime's `http` client."""
    if settings.cloud_provider == "gcp":
        from tools.cloud_gcp import GcpCloudTools

        return GcpCloudTools(settings=settings, http=http)
    if settings.cloud_provider == "aws":
        return _aws_tools(settings, http)
    return NotConfiguredCloud()


def _aws_tools(settings: Settings, http: httpx.AsyncClient) -> CloudTools:
    try:
        from tools.cloud_aws import AwsCloudTools
    except ImportError as exc:
        if not (exc.name or "").startswith("botocore"):
            raise
        logger.error("cloud tools unavailable: %s", BOTOCORE_MISSING)
        return UnavailableCloud(BOTOCORE_MISSING)
    return AwsCloudTools(settings=settings, http=http)
