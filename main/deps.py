"""What request handlers receive: the lifespan-built `Runtime`, as a typed dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

import httpx
from fastapi import Depends, Request

from config import Settings


@dataclass(slots=True)
class Runtime:
    """Every long-lived component, built once by the lifespan and closed by it.

    Fields typed `Any` are filled in as their modules land (intake, agent, tools, state);
    handlers must only use what they need.
    """

    settings: Settings
    http: httpx.AsyncClient
    state: Any = None
    intake: Any = None
    pagerduty: Any = None
    tools: Any = None
    agent: Any = None


def get_runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
