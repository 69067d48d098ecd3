"""The operator console over HTTP (CONTRACT §9 "The console"): sign-in and its cookie, the
login redirect, the security headers on every answer, CSRF and cross-site refusals of the
decision form, 404 pages, who decides, and markdown that renders nothing active.

The real app runs under uvicorn (`running_stack`); `console` is an httpx client that keeps
cookies like a browser. Approve-mode runs hold their write until a test decides it.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import Request, Response

from config import Settings
from demo.simulators.llm import Call, FakeLLM
from main.console.markdown import render
from main.console.render import CSP
from main.session import COOKIE, Sessions
from tests.conftest import TEST_SECRETS, SettingsFactory
from tests.fakes.browser import pending_approval
from tests.fakes.policies import propose_then_conclude
from tests.fakes.stack import Stack, running_stack

TOKEN = TEST_SECRETS["ops_auth_token"]
INCIDENT = "generic:inc-1"
RESTART = Call(
    "call_ops_endpoint", {"service": "worker", "endpoint": "/ops/restart", "method": "POST"}
)
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}
HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(2)> [click](javascript:alert(3))"


def alert(incident: str = "inc-1") -> dict[str, Any]:
    return {"incident_id": incident, "summary": "Worker error rate above 5%", "service": "worker"}


@pytest.fixture
async def stack(make_settings: SettingsFactory) -> AsyncIterator[Stack]:
    """Approve mode; each run proposes a restart of `worker` and waits for a decision."""
    llm = FakeLLM(policy=propose_then_conclude(RESTART, report="# Restarted\nWorker is fine."))
    async with running_stack(make_settings, llm, agent_mode="approve") as running:
        yield running


def browser(stack: Stack, **headers: str) -> httpx.AsyncClient:
    """A client that keeps cookies and follows no redirect, like a test of a browser."""
    return httpx.AsyncClient(base_url=stack.base_url, headers=headers)


@contextlib.asynccontextmanager
async def signed_in(stack: Stack, **headers: str) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client with a console session."""
    async with browser(stack, **headers) as client:
        response = await client.post("/console/login", data={"token": TOKEN, "next": "/console"})
        assert response.status_code == 303, response.text
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def cookie_attributes(response: httpx.Response) -> dict[str, str]:
    header = response.headers["set-cookie"]
    parts = [p.strip() for p in header.split(";")]
    assert parts[0].startswith(f"{COOKIE}=")
    return {p.split("=", 1)[0].lower(): (p.split("=", 1) + [""])[1] for p in parts[1:]}


async def decision_page(client: httpx.AsyncClient, stack: Stack) -> tuple[str, str]:
    """(form action, CSRF token) of the pending approval on the incident's page."""
    approval = await pending_approval(stack, INCIDENT)
    page = await client.get(f"/console/alerts/{INCIDENT}")
    assert page.status_code == 200
    action = f"/console/alerts/{INCIDENT}/approvals/{approval.approval_id}"
    assert f'action="{action}"' in page.text
    return action, csrf_of(page.text)


async def still_pending(stack: Stack) -> bool:
    return any(p.incident_id == INCIDENT for p in await stack.runtime.approvals.pending())


# -- sign-in --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "target"),
    [
        ("/console", "/console"),
        ("/console/alerts/generic:inc-1", "/console/alerts/generic:inc-1"),
        (
            "/console/alerts/generic:inc-1?occurrence=2",
            "/console/alerts/generic:inc-1?occurrence=2",
        ),
        ("/console/no-such-page", "/console/no-such-page"),
    ],
)
async def test_every_console_page_redirects_to_the_login_page_without_a_session(
    stack: Stack, path: str, target: str
) -> None:
    async with browser(stack) as client:
        response = await client.get(path)
    assert response.status_code == 303
    location = httpx.URL(response.headers["location"])
    assert location.path == "/console/login"
    assert location.params["next"] == target


async def test_login_with_a_wrong_token_is_401_with_the_form_and_no_hint(stack: Stack) -> None:
    async with browser(stack) as client:
        wrong = await client.post("/console/login", data={"token": "nope", "next": "/console"})
        empty = await client.post("/console/login", data={"next": "/console"})
        after = await client.get("/console")
    for response in (wrong, empty):
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        assert "Sign-in failed." in response.text
        assert 'name="token"' in response.text
        assert "wrong" not in response.text.lower()
    assert after.status_code == 303  # still not signed in


async def test_login_sets_a_signed_httponly_strict_expiring_cookie_and_goes_on(
    stack: Stack,
) -> None:
    target = "/console/alerts/generic:inc-1?occurrence=1"
    async with browser(stack) as client:
        response = await client.post("/console/login", data={"token": TOKEN, "next": target})
        page = await client.get("/console")
    assert response.status_code == 303
    assert response.headers["location"] == target
    attributes = cookie_attributes(response)
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert int(attributes["max-age"]) == 12 * 3600
    assert attributes["path"] == "/"
    assert "secure" not in attributes  # plain http
    assert page.status_code == 200
    assert "<h1>Incidents</h1>" in page.text


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/console",
        "//evil.example/console",
        "/\\evil.example",
        "/consolex",
        "/alerts/generic:inc-1",
        "javascript:alert(1)",
        "/console\r\nSet-Cookie: x=1",
    ],
)
async def test_login_never_sends_anyone_off_the_console(stack: Stack, target: str) -> None:
    async with browser(stack) as client:
        response = await client.post("/console/login", data={"token": TOKEN, "next": target})
    assert response.status_code == 303
    assert response.headers["location"] == "/console"


async def test_the_cookie_is_secure_over_https(make_settings: SettingsFactory) -> None:
    llm = FakeLLM()
    https = "https://sre.example.com"
    async with (
        running_stack(make_settings, llm, public_url=https) as stack,
        browser(stack) as client,
    ):
        public = await client.post("/console/login", data={"token": TOKEN})
    proxied = {"X-Forwarded-Proto": "https"}
    async with running_stack(make_settings, llm) as stack, browser(stack, **proxied) as client:
        forwarded = await client.post("/console/login", data={"token": TOKEN})
    assert "secure" in cookie_attributes(public)
    assert "secure" in cookie_attributes(forwarded)


def minted_cookie(settings: Settings, monkeypatch: pytest.MonkeyPatch, age: float) -> str:
    """A session cookie as the runtime would have issued it `age` seconds ago."""
    response = Response()
    request = Request({"type": "http", "scheme": "http", "headers": [], "path": "/"})
    issued_at = time.time() - age
    with monkeypatch.context() as patch:  # itsdangerous stamps the cookie with time.time()
        patch.setattr(time, "time", lambda: issued_at)
        Sessions(settings).issue(response, request)
    return response.headers["set-cookie"].split(";", 1)[0].split("=", 1)[1]


async def test_a_tampered_or_expired_cookie_is_refused(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh = minted_cookie(stack.settings, monkeypatch, age=60)
    expired = minted_cookie(stack.settings, monkeypatch, age=12 * 3600 + 60)
    payload, stamp, signature = fresh.split(".")
    tampered = f"{payload}.{stamp}.{signature[:-2]}{'AA' if signature[-2:] != 'AA' else 'BB'}"
    answers = {}
    for name, value in {"fresh": fresh, "expired": expired, "tampered": tampered}.items():
        async with httpx.AsyncClient(base_url=stack.base_url, cookies={COOKIE: value}) as client:
            answers[name] = (await client.get("/console")).status_code
    assert answers == {"fresh": 200, "expired": 303, "tampered": 303}


async def test_logout_needs_the_csrf_token_and_ends_the_session(stack: Stack) -> None:
    async with signed_in(stack) as client:
        page = await client.get("/console")
        refused = await client.post("/console/logout", data={})
        still_in = await client.get("/console")
        out = await client.post("/console/logout", data={"csrf_token": csrf_of(page.text)})
        client.cookies.delete(COOKIE)  # as the browser does with the expired cookie
    assert refused.status_code == 403
    assert still_in.status_code == 200
    assert out.status_code == 303
    assert out.headers["location"] == "/console/login"
    assert f'{COOKIE}=""' in out.headers["set-cookie"]
    assert "max-age=0" in out.headers["set-cookie"].lower()


# -- every answer ---------------------------------------------------------------------------


async def test_every_console_answer_carries_the_security_headers(stack: Stack) -> None:
    await stack.webhook("generic", alert())
    async with browser(stack) as anonymous:
        answers = [
            await anonymous.get("/console"),
            await anonymous.get("/console/login"),
            await anonymous.post("/console/login", data={"token": "nope"}),
            await anonymous.get("/console/static/console.css"),
            await anonymous.get("/console/static/console.js"),
        ]
    async with signed_in(stack) as client:
        action, csrf = await decision_page(client, stack)
        answers += [
            await client.get("/console"),
            await client.get(f"/console/alerts/{INCIDENT}"),
            await client.get("/console/alerts/generic:unknown"),
            await client.get(f"/console/alerts/{INCIDENT}?occurrence=abc"),
            await client.get("/console/static/nothing.css"),
            await client.get("/console/no-such-page"),
            await client.post(action, data={"decision": "approve"}),
            await client.post(action, data={"decision": "approve", "csrf_token": csrf}),
        ]
    await stack.idle()
    assert [r.status_code for r in answers] == [
        *(303, 200, 401, 200, 200),
        *(200, 200, 404, 400, 404, 404, 403, 303),
    ]
    for response in answers:
        for name, value in HEADERS.items():
            assert response.headers.get(name) == value, (response.url, name)
    for response in answers:
        if response.headers.get("content-type", "").startswith("text/html"):
            assert re.search(r"<script(?![^>]*\ssrc=)", response.text) is None, response.url
            assert " style=" not in response.text
            assert "<style" not in response.text


async def test_static_files_have_their_types_and_nothing_else_is_served(stack: Stack) -> None:
    async with browser(stack) as client:
        css = await client.get("/console/static/console.css")
        js = await client.get("/console/static/console.js")
        icon = await client.get("/console/static/favicon.svg")
        outside = await client.get("/console/static/..%2F..%2Fsession.py")
        template = await client.get("/console/static/base.html")
    assert css.headers["content-type"].startswith("text/css")
    assert js.headers["content-type"].startswith("text/javascript")
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert outside.status_code == 303  # not a static file's name: the login redirect
    assert outside.headers["location"].startswith("/console/login")
    assert template.status_code == 404


async def test_unknown_incidents_and_occurrences_are_404_pages(stack: Stack) -> None:
    await stack.webhook("generic", alert())
    async with signed_in(stack) as client:
        unknown = await client.get("/console/alerts/generic:nope")
        occurrence = await client.get(f"/console/alerts/{INCIDENT}?occurrence=7")
        decision = await client.post(
            f"/console/alerts/{INCIDENT}/approvals/apr_nope",
            data={
                "decision": "approve",
                "csrf_token": csrf_of((await client.get("/console")).text),
            },
        )
    await pending_approval(stack, INCIDENT)
    assert unknown.status_code == 404
    assert "No incident &#39;generic:nope&#39; is known" in unknown.text
    assert occurrence.status_code == 404
    assert "No occurrence 7" in occurrence.text
    assert decision.status_code == 404
    assert "No approval &#39;apr_nope&#39; for this incident." in decision.text
    assert "text/html" in decision.headers["content-type"]
    assert await still_pending(stack)
    await _finish(stack)


async def _finish(stack: Stack) -> None:
    """Deny what is pending (through the API) so the run ends before the stack stops."""
    for proposal in await stack.runtime.approvals.pending():
        await stack.runtime.approvals.decide(
            proposal.incident_id, proposal.approval_id, approve=False, note="", by="test"
        )
    await stack.idle()


# -- the decision form ----------------------------------------------------------------------


async def test_a_decision_without_or_with_a_wrong_csrf_token_is_403_and_decides_nothing(
    stack: Stack,
) -> None:
    await stack.webhook("generic", alert())
    async with signed_in(stack) as client:
        action, csrf = await decision_page(client, stack)
        missing = await client.post(action, data={"decision": "approve"})
        wrong = await client.post(action, data={"decision": "approve", "csrf_token": csrf + "x"})
    async with browser(stack) as other:  # another session's token is no good either
        await other.post("/console/login", data={"token": TOKEN})
        theirs = csrf_of((await other.get("/console")).text)
        other.cookies.set(COOKIE, client.cookies[COOKIE])
        borrowed = await other.post(action, data={"decision": "approve", "csrf_token": theirs})
    assert [r.status_code for r in (missing, wrong, borrowed)] == [403, 403, 403]
    assert "security token" in missing.text
    assert await still_pending(stack)
    assert stack.services["worker"].paths("POST") == []
    await _finish(stack)


async def test_a_decision_from_another_site_is_403_and_decides_nothing(stack: Stack) -> None:
    await stack.webhook("generic", alert())
    async with signed_in(stack) as client:
        action, csrf = await decision_page(client, stack)
        form = {"decision": "approve", "csrf_token": csrf}
        origin = await client.post(action, data=form, headers={"Origin": "https://evil.example"})
        fetch = await client.post(action, data=form, headers={"Sec-Fetch-Site": "cross-site"})
    assert (origin.status_code, fetch.status_code) == (403, 403)
    assert "another site" in origin.text
    assert await still_pending(stack)
    await _finish(stack)


async def test_a_decision_without_a_session_goes_to_the_login_page(stack: Stack) -> None:
    await stack.webhook("generic", alert())
    approval = await pending_approval(stack, INCIDENT)
    async with browser(stack) as client:
        response = await client.post(
            f"/console/alerts/{INCIDENT}/approvals/{approval.approval_id}",
            data={"decision": "approve"},
        )
    assert response.status_code == 303
    assert httpx.URL(response.headers["location"]).params["next"] == f"/console/alerts/{INCIDENT}"
    assert await still_pending(stack)
    await _finish(stack)


async def test_an_approval_is_sent_once_and_a_second_decision_is_a_409_page(
    stack: Stack,
) -> None:
    await stack.webhook("generic", alert())
    async with signed_in(stack) as client:
        action, csrf = await decision_page(client, stack)
        form = {"decision": "approve", "note": "go ahead", "csrf_token": csrf}
        first = await client.post(action, data=form)
        second = await client.post(action, data={**form, "decision": "deny"})
        bad = await client.post(action, data={**form, "decision": "maybe"})
        await stack.idle()
        page = await client.get(f"/console/alerts/{INCIDENT}")
    assert first.status_code == 303
    assert first.headers["location"] == f"/console/alerts/{INCIDENT}"
    assert second.status_code == 409
    assert "is already approved by token" in second.text
    assert '<h1><span class="id">generic:inc-1</span></h1>' in second.text  # the page, again
    assert bad.status_code == 400
    assert stack.services["worker"].paths("POST") == ["/ops/restart"]
    assert "go ahead" in page.text
    assert "<h1>Restarted</h1>" in page.text  # the report, rendered


async def test_the_identity_header_names_who_decided(make_settings: SettingsFactory) -> None:
    llm = FakeLLM(policy=propose_then_conclude(RESTART))
    user = {"X-Goog-Authenticated-User-Email": "accounts.google.com:ana@example.com"}
    async with running_stack(
        make_settings,
        llm,
        agent_mode="approve",
        console_identity_header="X-Goog-Authenticated-User-Email",
        shutdown_grace_seconds=1,
    ) as stack:
        await stack.webhook("generic", alert())
        async with signed_in(stack, **user) as client:
            action, csrf = await decision_page(client, stack)
            listing = await client.get("/console")
            await client.post(
                action, data={"decision": "deny", "note": "not now", "csrf_token": csrf}
            )
            await stack.idle()
            page = await client.get(f"/console/alerts/{INCIDENT}")
        [approval] = (await stack.client.get(f"/alerts/{INCIDENT}")).json()["approvals"]
    assert approval["decided_by"] == "ana@example.com"
    assert approval["note"] == "not now"
    assert '<span class="who">ana@example.com</span>' in listing.text
    assert "ana@example.com" in page.text


# -- what the pages show --------------------------------------------------------------------


async def test_hostile_alert_text_is_escaped_on_both_pages(stack: Stack) -> None:
    body = {
        "incident_id": "inc-1",
        "summary": HOSTILE,
        "service": "worker",
        "labels": {"team": "<img src=x onerror=alert(2)>"},
        "url": "javascript:alert(4)",
    }
    await stack.webhook("generic", body)
    async with signed_in(stack) as client:
        await pending_approval(stack, INCIDENT)
        pages = [await client.get("/console"), await client.get(f"/console/alerts/{INCIDENT}")]
    for page in pages:
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
        assert "<script>alert" not in page.text
        assert "<img" not in page.text
        assert 'href="javascript:' not in page.text
    assert "javascript:alert(4)" in pages[1].text  # shown, as text
    await _finish(stack)


def test_markdown_escapes_html_and_drops_links_that_are_not_web_or_mail() -> None:
    html = render(
        "# Report <script>alert(1)</script>\n\n"
        "<img src=x onerror=alert(2)>\n\n"
        "[click](javascript:alert(3)) [data](data:text/html,hi) [local](/console) "
        "[web](https://example.com/runbook) [mail](mailto:oncall@example.com) "
        "![pixel](https://tracker.example/p.png)\n\n"
        "| a | b |\n|---|---|\n| <b>x</b> | y |\n"
    )
    assert "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<img" not in html
    assert "javascript:" not in html.replace("[click](javascript:alert(3))", "")
    assert 'href="javascript' not in html
    assert 'href="data:' not in html
    assert 'href="/console"' not in html
    assert (
        '<a href="https://example.com/runbook" rel="noopener noreferrer nofollow">web</a>' in html
    )
    assert 'href="mailto:oncall@example.com"' in html
    assert "<table>" in html
    assert "&lt;b&gt;x&lt;/b&gt;" in html


async def test_pages_refresh_themselves_but_never_over_a_decision_form(stack: Stack) -> None:
    await stack.webhook("generic", alert())
    fallback = '<noscript><meta http-equiv="refresh" content="5"></noscript>'
    async with signed_in(stack) as client:
        await pending_approval(stack, INCIDENT)
        listing = await client.get("/console")
        waiting = await client.get(f"/console/alerts/{INCIDENT}")
        await _finish(stack)
        finished = await client.get(f"/console/alerts/{INCIDENT}")
    assert 'data-refresh="5"' in listing.text
    assert fallback in listing.text
    assert 'data-refresh="5"' in waiting.text  # the script pauses while a note is typed
    assert fallback not in waiting.text  # without it, a typed note must not be thrown away
    assert "data-refresh" not in finished.text
    assert fallback not in finished.text
