"""The operator console (CONTRACT §9): HTML pages over the runtime, served at `/console`.

`router` holds every console route: sign-in and the decision forms (`forms`), the incident
list, one incident's page, the static files and a 404 for any other console address
(`pages`, whose catch-all must come last). Every answer goes through `guard.ConsoleRoute`:
HTML only, the security headers always, a login redirect without a session.
"""

from __future__ import annotations

from fastapi import APIRouter

from main.console import forms, pages

router = APIRouter(include_in_schema=False)
router.include_router(forms.router)
router.include_router(pages.router)  # last: its catch-all answers what nothing else did

__all__ = ["router"]
