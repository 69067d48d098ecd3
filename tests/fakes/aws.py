"""A fake AWS JSON-protocol endpoint for CloudWatch Logs and CloudWatch (one app serves both:
point AWS_ENDPOINT_URL_LOGS and AWS_ENDPOINT_URL_MONITORING at it), dispatching on
`X-Amz-Target` and answering with the recorded shapes in tests/data/cloud/aws/.

    app, aws = make_fake_aws()
    async with serve(app) as base_url:
        settings = make_settings(**aws.settings_for(base_url), ...)
    aws.script["FilterLogEvents"].append(Scripted(400, {"__type": "AccessDeniedException"}))
    aws.requests                    # every call: headers (lower-case) and JSON body

A request without a SigV4 `Authorization` header is refused like AWS does
(`MissingAuthenticationTokenException`); the signature itself is not recomputed.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from demo.simulators.ops_service import RecordedRequest
from demo.simulators.pagerduty import Scripted

DATA = Path(__file__).resolve().parents[1] / "data" / "cloud" / "aws"
CONTENT_TYPES = {
    "Logs_20140328": "application/x-amz-json-1.1",
    "GraniteServiceVersion20100801": "application/x-amz-json-1.0",
}
DEFAULTS = {
    "FilterLogEvents": "filter_log_events.json",
    "DescribeLogGroups": "describe_log_groups.json",
    "GetMetricData": "get_metric_data.json",
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@dataclass
class FakeAws:
    requests: list[RecordedRequest] = field(default_factory=list)
    script: defaultdict[str, deque[Scripted]] = field(default_factory=lambda: defaultdict(deque))

    def settings_for(self, base_url: str) -> dict[str, str]:
        return {"aws_endpoint_url_logs": base_url, "aws_endpoint_url_monitoring": base_url}

    def actions(self) -> list[str]:
        return [r.headers.get("x-amz-target", "").rpartition(".")[2] for r in self.requests]

    def answer(self, request: RecordedRequest) -> Response:
        self.requests.append(request)
        prefix, _, action = request.headers.get("x-amz-target", "").partition(".")
        content_type = CONTENT_TYPES.get(prefix, "application/x-amz-json-1.1")
        if not request.headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            error = {"__type": "MissingAuthenticationTokenException", "message": "no auth"}
            return _json(error, 400, content_type)
        if action not in DEFAULTS:
            return _json({"__type": "UnknownOperationException"}, 400, content_type)
        if self.script[action]:
            scripted = self.script[action].popleft()
            return _json(scripted.body or {}, scripted.status, content_type)
        return _json(load(DEFAULTS[action]), 200, content_type)


def _json(body: Any, status: int, content_type: str) -> Response:
    return Response(json.dumps(body), status_code=status, media_type=content_type)


def make_fake_aws() -> tuple[Starlette, FakeAws]:
    aws = FakeAws()

    async def endpoint(request: Request) -> Response:
        body = await request.body()
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=request.url.query,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=json.loads(body) if body else None,
        )
        return aws.answer(recorded)

    return Starlette(routes=[Route("/", endpoint, methods=["POST"])]), aws
