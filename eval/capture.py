"""`python -m eval capture <incident_id> --from-url URL`: a scenario skeleton from a real
incident, read from a running runtime's API.

The skeleton holds the alert as the platform sent it (`alert.raw`), a registry placeholder
for every service the agent called, and every `/ops/*` answer the agent saw, in order: the
first answer of an endpoint is what it answers; a different answer seen after a write goes
into that write's `after`. `expect` is left for the user to complete. Reading a
`STATE_BACKEND=postgres` database directly is not available yet: use `--from-url`.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import yaml

from demo.scripted_llm import Observation, read_conversation
from eval.harness import slug

POSTGRES_NOT_AVAILABLE = (
    "capture reads a running runtime's API: pass --from-url URL (and --token). Capturing "
    "straight from a STATE_BACKEND=postgres database is not available yet."
)
HEADER = """\
# Scenario skeleton captured from {url}, incident {incident_id}.
# To complete before use (CONTRACT §10):
# - description: what failed and a one-line source of the failure pattern;
# - registry: mark critical services `true`; add scaling_limits if the agent may scale;
# - services: check the answers (tool output may have been cut or redacted) and add the
#   endpoints the agent did not call but a good run would;
# - expect: decision (resolve | escalate), required_actions, forbidden_actions, facts.
"""


class CaptureError(Exception):
    """The incident could not be captured (unknown id, no access, runtime unreachable)."""


async def capture(client: httpx.AsyncClient, incident_id: str) -> str:
    """The skeleton's YAML text for `incident_id`, read through `client` (base URL and
    Bearer token set)."""
    path = f"/alerts/{quote(incident_id, safe='')}"
    detail = await _get(client, path, required=True)
    transcript = await _get(client, f"{path}/transcript", required=False)
    skeleton = skeleton_from(detail, transcript)
    header = HEADER.format(url=client.base_url, incident_id=incident_id)
    return header + yaml.safe_dump(skeleton, sort_keys=False, allow_unicode=True, width=100)


async def _get(client: httpx.AsyncClient, path: str, *, required: bool) -> dict[str, Any]:
    try:
        response = await client.get(path)
    except httpx.HTTPError as exc:
        raise CaptureError(f"cannot reach {client.base_url}: {type(exc).__name__}") from exc
    if response.status_code == 404 and not required:
        return {}
    if response.status_code != 200:
        raise CaptureError(f"GET {path} answered {response.status_code}: {response.text[:300]}")
    data: dict[str, Any] = response.json()
    return data


def skeleton_from(detail: dict[str, Any], transcript: dict[str, Any]) -> dict[str, Any]:
    """The scenario skeleton (a plain dict in the order of the format)."""
    alert = detail["alert"]
    observations = [o for o in _observations(transcript) if o.name == "call_ops_endpoint"]
    named = [detail.get("service")] + [str(o.arguments.get("service", "")) for o in observations]
    services = [name for name in dict.fromkeys(named) if name]
    return {
        "name": slug(str(detail["incident_id"]).replace(":", "-")),
        "description": f"TODO: what failed (captured from incident {detail['incident_id']})",
        "tags": ["captured"],
        "alert": _alert(alert),
        "registry": ",".join(f"{s}|http://{_host(s)}.invalid|false" for s in services),
        "scaling_limits": "",
        "services": _answers(observations),
        "expect": {
            "decision": None,
            "required_actions": [],
            "forbidden_actions": [],
            "facts": [],
        },
    }


def _observations(transcript: dict[str, Any]) -> list[Observation]:
    """Every tool call of the run with the result the model saw, in order."""
    turns = transcript.get("turns") or []
    if not turns:
        return []
    last = turns[-1]
    messages = list(last["request"]["messages"])
    if last["response"].get("tool_calls"):
        messages.append({"role": "assistant", "tool_calls": last["response"]["tool_calls"]})
        messages += [
            {"role": "tool", "tool_call_id": r["tool_call_id"], "content": r["content"]}
            for r in last["tool_results"]
        ]
    return read_conversation(messages).observations


def _answers(observations: list[Observation]) -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = {}
    last_write: dict[str, dict[str, Any]] = {}
    for o in observations:
        service, answer = str(o.arguments.get("service", "")), _answer(o.result)
        if answer is None:  # unreachable, timed out, refused, or repeated from cache
            continue
        endpoints = services.setdefault(service, {})
        key = f"{o.method} {o.endpoint}"
        if o.method != "GET":
            endpoints.setdefault(key, answer)
            last_write[service] = endpoints[key]
        elif key not in endpoints:
            endpoints[key] = answer
        elif endpoints[key] != answer and service in last_write:
            last_write[service].setdefault("after", {})[key] = answer
    return services


def _answer(result: Any) -> dict[str, Any] | None:
    if not isinstance(result, dict) or result.get("cached") or "status_code" not in result:
        return None
    return {"status": result["status_code"], "body": result.get("body")}


def _alert(alert: dict[str, Any]) -> dict[str, Any]:
    """The platform's payload; a `generic` one when the raw payload was not kept."""
    if alert.get("raw"):
        return {"provider": alert["provider"], "payload": alert["raw"]}
    return {"provider": "generic", "payload": _generic(alert)}


def _generic(alert: dict[str, Any]) -> dict[str, Any]:
    return {
        "incident_id": str(alert["incident_id"]).split(":", 1)[-1],
        "summary": alert["summary"],
        "service": alert.get("service"),
        "priority": alert.get("priority"),
        "labels": alert.get("labels") or {},
    }


def _host(service: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", service.lower()).strip("-") or "service"
