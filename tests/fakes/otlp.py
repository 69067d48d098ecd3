"""A tiny OTLP/HTTP (protobuf) receiver: records what exporters send, parsed."""

from __future__ import annotations

import gzip
import zlib
from dataclasses import dataclass, field

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
    ExportMetricsServiceResponse,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _decode(request: Request, body: bytes) -> bytes:
    encoding = request.headers.get("content-encoding", "")
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    return body


@dataclass
class OtlpReceiver:
    """Serve `app` (e.g. with demo.simulators.server.serve); inspect the lists afterwards."""

    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    logs: list[ExportLogsServiceRequest] = field(default_factory=list)

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/traces", self._traces, methods=["POST"]),
                Route("/v1/metrics", self._metrics, methods=["POST"]),
                Route("/v1/logs", self._logs, methods=["POST"]),
            ]
        )

    async def _traces(self, request: Request) -> Response:
        body = _decode(request, await request.body())
        self.traces.append(ExportTraceServiceRequest.FromString(body))
        return _protobuf(ExportTraceServiceResponse().SerializeToString())

    async def _metrics(self, request: Request) -> Response:
        body = _decode(request, await request.body())
        self.metrics.append(ExportMetricsServiceRequest.FromString(body))
        return _protobuf(ExportMetricsServiceResponse().SerializeToString())

    async def _logs(self, request: Request) -> Response:
        body = _decode(request, await request.body())
        self.logs.append(ExportLogsServiceRequest.FromString(body))
        return _protobuf(ExportLogsServiceResponse().SerializeToString())

    def span_names(self) -> set[str]:
        return {
            span.name
            for request in self.traces
            for resource in request.resource_spans
            for scope in resource.scope_spans
            for span in scope.spans
        }

    def metric_names(self) -> set[str]:
        return {
            metric.name
            for request in self.metrics
            for resource in request.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
        }

    def log_records(self) -> list[tuple[str, bytes, bytes]]:
        """(body text, trace_id bytes, span_id bytes) of every received log record."""
        return [
            (record.body.string_value, record.trace_id, record.span_id)
            for request in self.logs
            for resource in request.resource_logs
            for scope in resource.scope_logs
            for record in scope.log_records
        ]

    def service_names(self) -> set[str]:
        return {
            attribute.value.string_value
            for request in self.traces
            for resource in request.resource_spans
            for attribute in resource.resource.attributes
            if attribute.key == "service.name"
        }


def _protobuf(payload: bytes) -> Response:
    return Response(payload, media_type="application/x-protobuf")
