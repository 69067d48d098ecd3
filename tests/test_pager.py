"""The pager: one bounded sender, storms coalesced, 429s honoured by every worker, nothing lost."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from demo.simulators.pagerduty import FakePagerDuty, Scripted
from tests.conftest import SettingsFactory
from tests.test_pagerduty import FakeTime, make_alert
from tools import pager as pager_module
from tools.pager import Pager
from tools.pagerduty import Escalation, PagerDutyClient, RateGate

PagerFactory = Callable[..., Pager]


@pytest.fixture
async def make_pager(
    fake_pd: tuple[FakePagerDuty, str], make_settings: SettingsFactory
) -> AsyncIterator[PagerFactory]:
    fake, base_url = fake_pd
    stack: list[tuple[Pager, httpx.AsyncClient]] = []

    def factory(**options: Any) -> Pager:
        http = httpx.AsyncClient()
        settings = make_settings(**fake.settings_for(base_url))
        client = PagerDutyClient(http=http, settings=settings)
        pager = Pager(client=client, **{"max_per_minute": 60, **options})
        stack.append((pager, http))
        return pager

    yield factory
    for pager, http in stack:
        await pager.close(seconds=0)
        await http.aclose()


def ids(count: int) -> list[str]:
    return [f"alertmanager:storm-{n:03d}" for n in range(count)]


async def escalate_all(pager: Pager, incident_ids: list[str]) -> list[Any]:
    futures = [
        pager.submit_trigger(
            Escalation(alert=make_alert(incident_id=i), summary="down", trace_id="t")
        )
        for i in incident_ids
    ]
    return list(await asyncio.gather(*futures))


async def test_escalations_within_the_rate_are_paged_one_by_one(
    make_pager: PagerFactory, fake_pd: tuple[FakePagerDuty, str]
) -> None:
    pager = make_pager(max_per_minute=5)
    async with pager:
        results = await escalate_all(pager, ids(5))
    assert [r.ok for r in results] == [True] * 5
    assert sorted(e.json["dedup_key"] for e in fake_pd[0].events) == ids(5)


async def test_a_flood_above_the_rate_is_coalesced_into_one_storm_listing_every_incident(
    make_pager: PagerFactory, fake_pd: tuple[FakePagerDuty, str]
) -> None:
    pager = make_pager(max_per_minute=3, storm_update_seconds=0)
    incident_ids = ids(50)
    async with pager:
        results = await escalate_all(pager, incident_ids)
    events = [e.json for e in fake_pd[0].events]
    single = [e for e in events if not e["dedup_key"].startswith("storm:")]
    storms = [e for e in events if e["dedup_key"].startswith("storm:")]
    assert sorted(e["dedup_key"] for e in single) == incident_ids[:3]
    assert {e["dedup_key"] for e in storms} == {f"storm:{incident_ids[3]}"}
    assert all(e["payload"]["summary"].startswith("Alert storm:") for e in storms)
    listed = storms[-1]["payload"]["custom_details"]["incident_ids"]
    assert listed == incident_ids[3:]  # the last update lists every coalesced incident
    assert all(r.ok for r in results)
    assert {r.dedup_key for r in results[3:]} == {f"storm:{incident_ids[3]}"}
    assert len(storms) < 10  # updates are batched, not one per alert


async def test_a_storm_too_long_to_list_in_one_event_opens_another(
    make_pager: PagerFactory, fake_pd: tuple[FakePagerDuty, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pager_module, "STORM_MAX_ID_CHARS", 10 * len(ids(1)[0]))
    pager = make_pager(max_per_minute=1, storm_update_seconds=0)
    incident_ids = ids(31)
    async with pager:
        await escalate_all(pager, incident_ids)
    storms: dict[str, list[str]] = {}
    for event in (e.json for e in fake_pd[0].events):
        if event["dedup_key"].startswith("storm:"):
            storms[event["dedup_key"]] = event["payload"]["custom_details"]["incident_ids"]
    assert list(storms) == [f"storm:{incident_ids[n]}" for n in (1, 11, 21)]
    assert [i for listed in storms.values() for i in listed] == incident_ids[1:]


async def test_storm_updates_wait_for_their_spacing_but_not_at_shutdown(
    make_pager: PagerFactory, fake_pd: tuple[FakePagerDuty, str]
) -> None:
    pager = make_pager(max_per_minute=1, storm_update_seconds=3600)
    async with pager:
        first = await escalate_all(pager, ids(2))  # one single page, one storm event
        late = pager.submit_trigger(
            Escalation(alert=make_alert(incident_id="late"), summary="x", trace_id="t")
        )
        await asyncio.sleep(0)
        assert not late.done()  # the update waits for its spacing (an hour here)
        await pager.close(seconds=5)  # closing sends it at once
    assert late.result().ok
    assert all(r.ok for r in first)
    assert fake_pd[0].events[-1].json["payload"]["custom_details"]["incident_ids"][-1] == "late"


async def test_a_callers_cancellation_never_cancels_its_page(
    make_pager: PagerFactory, fake_pd: tuple[FakePagerDuty, str]
) -> None:
    fake_pd[0].events_script.extend([Scripted(500), Scripted(202)])  # a retry: takes a while
    pager = make_pager()
    async with pager:
        waiter = asyncio.create_task(
            pager.trigger(Escalation(alert=make_alert(), summary="down", trace_id="t"))
        )
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await pager.close(seconds=30)
    assert fake_pd[0].event_actions()[-1] == "trigger"
    assert [s.status for s in fake_pd[0].events_script] == []  # both answers were used


async def test_close_resolves_what_could_not_be_delivered_as_failed(
    make_pager: PagerFactory, fake_pd: tuple[FakePagerDuty, str]
) -> None:
    fake_pd[0].events_default = Scripted(500)  # PagerDuty keeps failing
    pager = make_pager()
    async with pager:
        futures = [
            pager.submit_trigger(
                Escalation(alert=make_alert(incident_id=i), summary="x", trace_id="t")
            )
            for i in ids(3)
        ]
        await pager.close(seconds=0.05)
    results = [f.result() for f in futures]
    assert [r.ok for r in results] == [False] * 3
    assert {r.dedup_key for r in results} == set(ids(3))
    assert all("stopped before it was delivered" in (r.error or "") for r in results)


async def test_a_page_submitted_after_close_fails_at_once_never_hangs(
    make_pager: PagerFactory,
) -> None:
    pager = make_pager()
    async with pager:
        pass
    result = await pager.trigger(Escalation(alert=make_alert(), summary="x", trace_id="t"))
    assert (result.ok, result.error) == (False, "the pager is not running")


async def test_a_page_that_would_join_a_storm_after_close_fails_at_once_too(
    make_pager: PagerFactory,
) -> None:
    pager = make_pager(max_per_minute=1)
    async with pager:
        pager.submit_trigger(
            Escalation(alert=make_alert(incident_id="first"), summary="x", trace_id="t")
        )
    late = pager.trigger(
        Escalation(alert=make_alert(incident_id="late"), summary="x", trace_id="t")
    )
    result = await asyncio.wait_for(late, 5)  # above the rate: it would have joined a storm
    assert (result.ok, result.error) == (False, "the pager is not running")


async def test_a_429_pauses_every_sender_for_its_retry_after(
    fake_pd: tuple[FakePagerDuty, str], make_settings: SettingsFactory
) -> None:
    fake, base_url = fake_pd
    fake.events_script.extend([Scripted(429, headers={"Retry-After": "7"}), Scripted(202)])
    time = FakeTime()
    gate = RateGate(clock=time.clock, sleep=time.sleep)
    settings = make_settings(**fake.settings_for(base_url))
    async with httpx.AsyncClient() as http:
        first, second = (
            PagerDutyClient(
                http=http, settings=settings, sleep=time.sleep, clock=time.clock, gate=gate
            )
            for _ in range(2)
        )
        assert (await first.trigger(Escalation(alert=make_alert(), summary="a", trace_id="t"))).ok
        assert time.sleeps == [7.0]  # the refused sender waited out Retry-After
        gate.pause(5)  # as if another 429 had just arrived
        assert (await second.trigger(Escalation(alert=make_alert(), summary="b", trace_id="t"))).ok
    assert time.sleeps == [7.0, 5.0]  # so did the other sender before its first attempt


async def test_a_storm_whose_sending_raises_fails_its_escalations_and_the_next_goes_out(
    make_pager: PagerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    pager = make_pager(max_per_minute=1)
    client = pager._client
    send = client.send_trigger
    raised = False

    async def once_broken(event: dict[str, Any], **kwargs: Any) -> Any:
        nonlocal raised
        if event["dedup_key"].startswith("storm:") and not raised:
            raised = True
            raise RuntimeError("a bug in the client")
        return await send(event, **kwargs)

    monkeypatch.setattr(client, "send_trigger", once_broken)
    async with pager:
        pager.hurry()  # storm updates without their spacing
        first = await escalate_all(pager, ids(3))  # one page, then a storm of two
        later = await escalate_all(pager, ["alertmanager:after"])
    assert [r.ok for r in first] == [True, False, False]
    assert "sender error: RuntimeError" in (first[1].error or "")
    assert [r.ok for r in later] == [True]  # the storm is sent again, not stuck
    assert later[0].dedup_key.startswith("storm:")
