"""The seam for read-only cloud log and metric queries (GCP Cloud Logging/Monitoring, AWS
CloudWatch). The real providers are a later task; until then `NotConfiguredCloud` answers.

An implementation receives already validated arguments whose `service` is the registered
name, and returns a JSON-able dict; a dict with an `"error"` key is a failed query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from tools.arguments import QueryLogsArgs, QueryMetricsArgs

if TYPE_CHECKING:
    from tools.context import RunContext

NOT_CONFIGURED = "cloud provider not configured: set CLOUD_PROVIDER=gcp or aws"


class CloudTools(Protocol):
    async def query_logs(self, args: QueryLogsArgs, ctx: RunContext) -> dict[str, Any]: ...

    async def query_metrics(self, args: QueryMetricsArgs, ctx: RunContext) -> dict[str, Any]: ...


class NotConfiguredCloud:
    """The default: every query answers that no cloud provider is configured."""

    async def query_logs(self, args: QueryLogsArgs, ctx: RunContext) -> dict[str, Any]:
        return {"error": NOT_CONFIGURED}

    async def query_metrics(self, args: QueryMetricsArgs, ctx: RunContext) -> dict[str, Any]:
        return {"error": NOT_CONFIGURED}
