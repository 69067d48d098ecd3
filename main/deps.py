"""What request handlers receive: the lifespan-built `Runtime`, as a typed dependency."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

import httpx
from fastapi import Depends, Request

from config import Settings

if TYPE_CHECKING:
    from agent import ReportWriter
    from intake.approvals import Desk
    from intake.service import IntakeService
    from main.session import Sessions
    from state import RuntimeState
    from tools import CloudTools, Pager, Redactor


@dataclass(slots=True)
class Runtime:
    """Every long-lived component, built once by the lifespan and closed by it."""

    settings: Settings
    http: httpx.AsyncClient
    state: RuntimeState
    intake: IntakeService
    pager: Pager
    reports: ReportWriter
    cloud: CloudTools
    redactor: Redactor
    approvals: Desk
    sessions: Sessions


async def get_runtime(request: Request) -> Runtime:
    """`async` on purpose: FastAPI runs a plain `def` dependency in its thread pool, a
    thread hop per request that cost more than the whole webhook handler."""
    runtime: Runtime = request.app.state.runtime
    return runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]
