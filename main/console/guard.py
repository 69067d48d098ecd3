"""Who may see the console and post its forms, and how every console answer is made safe.

`ConsoleRoute` is the route class of every console route: whatever the handler returns or
raises, the answer is HTML with the security headers (`render.SECURITY_HEADERS`). A request
without a session is sent to the login page (303), a refused one gets an error page with its
status (not the JSON API's error body).

`SessionDep` requires a valid console session; `checked_form` reads a posted form only when
it comes from this site and carries the session's CSRF token (403 otherwise).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from main.console.render import page, secure
from main.deps import Runtime, RuntimeDep
from main.errors import ClientError
from main.session import CSRF_FIELD, Session, csrf_matches

logger = logging.getLogger(__name__)

LOGIN_PATH = "/console/login"
HOME_PATH = "/console"
MAX_FORM_FIELDS = 8
MAX_TARGET_CHARS = 2048


class LoginRequired(Exception):
    """No valid session: sign in first, then go on to `target`."""

    def __init__(self, target: str) -> None:
        super().__init__(target)
        self.target = target


def login_url(target: str) -> str:
    return f"{LOGIN_PATH}?next={quote(target, safe='')}"


def local_target(value: str | None) -> str:
    """`value` when it is a console page of this site (a path under /console), else the
    incident list: a login must never send anyone elsewhere."""
    if not value or len(value) > MAX_TARGET_CHARS:
        return HOME_PATH
    if not all(0x20 < ord(c) < 0x7F for c in value) or "\\" in value:
        return HOME_PATH
    if value == HOME_PATH or (value.startswith(HOME_PATH) and value[len(HOME_PATH)] in "/?"):
        return value
    return HOME_PATH


def here(request: Request) -> str:
    """This request's page, as a login's `next`."""
    path = quote(request.url.path, safe="/:@")
    query = request.url.query
    return f"{path}?{query}" if query else path


async def require_session(request: Request, runtime: RuntimeDep) -> Session:
    """Dependency: the request's console session, or a redirect to the login page."""
    session = runtime.sessions.read(request)
    if session is None:
        raise LoginRequired(here(request))
    return session


SessionDep = Annotated[Session, Depends(require_session)]


async def checked_form(request: Request, runtime: Runtime, session: Session) -> FormData:
    """The posted form, if this site sent it with the session's CSRF token; else a 403."""
    if not runtime.sessions.same_origin(request):
        raise ClientError(403, "forbidden", "This form was sent from another site.")
    form = await request.form(max_files=0, max_fields=MAX_FORM_FIELDS)
    if not csrf_matches(session, field(form, CSRF_FIELD)):
        raise ClientError(
            403,
            "forbidden",
            "The form's security token is missing or out of date. Reload the page and try again.",
        )
    return form


def field(form: FormData, name: str) -> str:
    """A text field of `form` ('' when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def error_page(status: int, message: str) -> Response:
    return page("error.html", status=status, status_code=status, message=message)


def _message(detail: Any, fallback: str) -> str:
    return detail if isinstance(detail, str) and detail else fallback


Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class ConsoleRoute(APIRoute):
    """A console route: HTML answers and error pages, all with the security headers."""

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            return secure(await _answer(handler, request))

        return console_handler


async def _answer(handler: Handler, request: Request) -> Response:
    try:
        return await handler(request)
    except LoginRequired as exc:
        return RedirectResponse(login_url(exc.target), status_code=303)
    except ClientError as exc:
        return error_page(exc.status, _message(exc.detail, "The request was refused."))
    except RequestValidationError:
        return error_page(400, "The address has a bad parameter (occurrence: a number from 1).")
    except StarletteHTTPException as exc:
        return error_page(exc.status_code, _message(exc.detail, "The request was refused."))
    except Exception as exc:
        logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        runtime = getattr(request.app.state, "runtime", None)
        if runtime is not None:
            runtime.state.record_error(type(exc).__name__, "unhandled error in a console page")
        return error_page(500, "Something went wrong on the runtime's side; it is logged.")
