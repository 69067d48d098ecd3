"""The console's pages: the incident list, one incident, its static files, and a 404 for
any other console address. Every page needs a session (else a redirect to the login page).

The list refreshes itself every `REFRESH_SECONDS`; an incident's page too while it can still
change. The refresh is `static/console.js`, which waits while the operator types, selects
text or has a form on its way; without JavaScript a `<noscript>` meta refresh does it, on
pages without a decision form (a note being typed must never be thrown away).
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response

from intake import AlertRecord
from main.console import views
from main.console.guard import HOME_PATH, ConsoleRoute, SessionDep
from main.console.render import SECURITY_HEADERS, STATIC, page, render
from main.deps import Runtime, RuntimeDep
from main.errors import ClientError
from main.session import CSRF_FIELD, Session, operator

router = APIRouter(route_class=ConsoleRoute, include_in_schema=False)

REFRESH_SECONDS = 5
_MEDIA_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}

Occurrence = Annotated[int | None, Query(ge=1, le=2**53)]


@dataclass(frozen=True, slots=True)
class Chrome:
    """What every signed-in page shows around its content."""

    csrf: str
    user: str | None  # the CONSOLE_IDENTITY_HEADER user; None when not named
    mode: str  # AGENT_MODE
    csrf_field: str = CSRF_FIELD


def chrome(request: Request, runtime: Runtime, session: Session) -> Chrome:
    who = operator(request, runtime.settings)
    return Chrome(
        csrf=session.csrf,
        user=None if who == "token" else who,
        mode=runtime.settings.agent_mode,
    )


@router.get("/console")
async def incidents(request: Request, runtime: RuntimeDep, session: SessionDep) -> HTMLResponse:
    """Every incident: awaiting approval, running, queued, recently finished."""
    return page(
        "incidents.html",
        board=await views.board(runtime),
        chrome=chrome(request, runtime, session),
        refresh=REFRESH_SECONDS,
        fallback_refresh=True,
    )


@router.get("/console/static/{name}")
async def static(name: str) -> Response:
    """The console's own CSS, script and icon (nothing is loaded from anywhere else)."""
    path = _static_files().get(name)
    if path is None:
        raise ClientError(404, "not_found", "No such file.")
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix])


@functools.cache
def _static_files() -> dict[str, Path]:
    return {p.name: p for p in STATIC.iterdir() if p.suffix in _MEDIA_TYPES}


@router.get("/console/alerts/{incident_id:path}")
async def incident(
    incident_id: str,
    request: Request,
    runtime: RuntimeDep,
    session: SessionDep,
    occurrence: Occurrence = None,
) -> HTMLResponse:
    """One occurrence of an incident (the latest unless `occurrence`)."""
    record = await views.find(runtime, incident_id, occurrence)
    return await incident_page(request, runtime, session, record)


async def incident_page(
    request: Request,
    runtime: Runtime,
    session: Session,
    record: AlertRecord,
    *,
    error: str | None = None,
    status: int = 200,
) -> HTMLResponse:
    """The incident page, with `error` above it (a refused decision) and that status."""
    view = await views.incident(runtime, record, error)
    frame = chrome(request, runtime, session)
    text = await runtime.intake.report(record)
    transcript = await runtime.intake.transcript(record)

    def build() -> str:
        # Redacting and rendering a long run's conversation takes a while: off the loop.
        return render(
            "incident.html",
            view=views.finish(view, runtime, record, text, transcript),
            chrome=frame,
            refresh=REFRESH_SECONDS if view.refresh else 0,
            fallback_refresh=view.refresh and not view.pending,
        )

    html = await asyncio.to_thread(build)
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


@router.get("/console/{rest:path}")
async def unknown(rest: str, _session: SessionDep) -> Response:
    """Any other console address: `/console/` is the list, the rest a 404 page."""
    if not rest:
        return RedirectResponse(HOME_PATH, status_code=303)
    raise ClientError(404, "not_found", "There is no such console page.")
