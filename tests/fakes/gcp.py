"""A fake Google Cloud: the OAuth token endpoint of a service-account key file (`/token`),
Cloud Logging (`entries:list`, `logs.list`) and Cloud Monitoring (`timeSeries.list`,
`metricDescriptors.list`), answering with the recorded shapes in tests/data/cloud/gcp/.

    app, gcp = make_fake_gcp()
    async with serve(app) as base_url:
        key = gcp.write_key_file(tmp_path, base_url)   # token_uri -> this fake
        settings = make_settings(**gcp.settings_for(base_url), ...)
    gcp.script["entries"].append(Scripted(403, body))  # next entries:list answers 403
    gcp.token_requests                                  # verified JWT claims, one per token
    gcp.requests                                        # API calls (path, query, headers, json)

The token endpoint runs the real JWT-bearer check: the assertion's RS256 signature must
verify with the key file's public key, else 400 `invalid_grant`.
"""

from __future__ import annotations

import base64
import functools
import json
from collections import defaultdict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from demo.simulators.ops_service import RecordedRequest
from demo.simulators.pagerduty import Scripted

DATA = Path(__file__).resolve().parents[1] / "data" / "cloud" / "gcp"
CLIENT_EMAIL = "sre-agent@demo-project.iam.gserviceaccount.com"
UNAUTHENTICATED = {
    "error": {
        "code": 401,
        "message": "Request had invalid authentication credentials.",
        "status": "UNAUTHENTICATED",
    }
}


def load(name: str) -> Any:
    return json.loads((DATA / name).read_text())


@functools.cache
def private_key() -> rsa.RSAPrivateKey:
    """One freshly generated RSA key per test session (generation is the slow part)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class FakeGcp:
    expires_in: int = 3599
    token_requests: list[dict[str, Any]] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    script: defaultdict[str, deque[Scripted]] = field(default_factory=lambda: defaultdict(deque))

    def settings_for(self, base_url: str) -> dict[str, str]:
        return {"gcp_logging_url": base_url, "gcp_monitoring_url": base_url}

    def write_key_file(self, directory: Path, base_url: str) -> Path:
        """A service-account key file whose `token_uri` is this fake's `/token`."""
        pem = private_key().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        info = {
            "type": "service_account",
            "project_id": "demo-project",
            "private_key_id": "0123456789abcdef0123456789abcdef01234567",
            "private_key": pem.decode(),
            "client_email": CLIENT_EMAIL,
            "client_id": "100000000000000000001",
            "token_uri": f"{base_url}/token",
        }
        path = directory / "service-account.json"
        path.write_text(json.dumps(info))
        return path

    def token(self, assertion: str) -> Response:
        claims = self._verified_claims(assertion)
        if claims is None:
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        self.token_requests.append(claims)
        access_token = f"ya29.fake-{len(self.issued) + 1}"
        self.issued.append(access_token)
        body = {**load("token.json"), "access_token": access_token}
        return JSONResponse({**body, "expires_in": self.expires_in})

    def _verified_claims(self, assertion: str) -> dict[str, Any] | None:
        try:
            header, payload, signature = assertion.split(".")
            private_key().public_key().verify(
                _b64decode(signature),
                f"{header}.{payload}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except (ValueError, InvalidSignature):
            return None
        claims: dict[str, Any] = json.loads(_b64decode(payload))
        return claims

    def answer(self, name: str, request: RecordedRequest, default: Any) -> Response:
        self.requests.append(request)
        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if bearer not in self.issued:
            return JSONResponse(UNAUTHENTICATED, status_code=401)
        if self.script[name]:
            return self.script[name].popleft().response(default)
        return JSONResponse(default)


async def _record(request: Request) -> RecordedRequest:
    body = await request.body()
    return RecordedRequest(
        method=request.method,
        path=request.url.path,
        query=request.url.query,
        headers={k.lower(): v for k, v in request.headers.items()},
        json=json.loads(body) if body else None,
    )


def make_fake_gcp() -> tuple[Starlette, FakeGcp]:
    gcp = FakeGcp()

    async def token(request: Request) -> Response:
        form = parse_qs((await request.body()).decode())
        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)
        return gcp.token(form.get("assertion", [""])[0])

    def api(name: str, default: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            return gcp.answer(name, await _record(request), default)

        return endpoint

    routes = [
        Route("/token", token, methods=["POST"]),
        Route("/v2/entries:list", api("entries", load("entries_list.json")), methods=["POST"]),
        Route("/v2/projects/{project}/logs", api("logs", {"logNames": []}), methods=["GET"]),
        Route(
            "/v3/projects/{project}/timeSeries",
            api("timeseries", load("timeseries_list.json")),
            methods=["GET"],
        ),
        Route(
            "/v3/projects/{project}/metricDescriptors",
            api("descriptors", {"metricDescriptors": []}),
            methods=["GET"],
        ),
    ]
    return Starlette(routes=routes), gcp
