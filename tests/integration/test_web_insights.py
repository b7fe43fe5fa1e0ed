"""Enrichment's results in a real browser (Debian's chromium, driven by Playwright) on the real API, broker
and store: the room shows the stored summary, then a new summary growing piece by piece from the live socket
and the result replacing it with its tasks; the review page shows summary, keywords, mood, agenda (a topic
goes to its dialogue), metrics, and "Summarize now" publishes a request. Markup in a summary shows as text.

Results are published as the enrichment service publishes them (a real ``LocalBackend`` result made into its
events by ``enrichment.insights``); there is no STT, merger or enrichment service here."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import expect

from enrichment.insights import chunk_event, insights_event
from enrichment.local import LocalBackend
from enrichment.model import Dialogue, MeetingTranscript
from tests.integration import browser
from tests.integration.conftest import Web, poll, running_web
from tests.integration.infra import Infra
from tests.integration.meetings import PASSWORD, final_dialogue, open_meeting
from tests.integration.test_insights_read import publish, requests_of

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs Debian's chromium (scripts/setup.sh --test)"),
]

RUN = "whisper:tiny.en/local"
MARKUP = '<img src=x onerror="window.__pwned=1"> [click](javascript:window.__pwned=2)'


@pytest.fixture(scope="module")
async def web(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Web]:
    async with running_web(infra, clickhouse_client, tmp_path_factory) as found:
        yield found


async def test_the_room_and_the_review_page_show_what_enrichment_made(web: Web) -> None:
    meeting = await open_meeting(web.url, ["ana", "ben"], title="Insights")
    m, ana, ben = meeting.meeting_id, meeting.people["ana"], meeting.people["ben"]
    dialogue_id = await final_dialogue(web.settings, m, ben.user_id)  # "Hello there." at 0:00
    turns = [Dialogue(dialogue_id=dialogue_id, speaker=ben.username, start_ms=0, end_ms=1500, text="Hello there."),
             Dialogue(dialogue_id=f"{dialogue_id}x", speaker=ana.username, start_ms=2000, end_ms=7000,
                      text="I will send the release notes to the team by Friday.")]  # fmt: skip
    transcript = MeetingTranscript(dialogues=tuple(turns), participants=(ana.username, ben.username))
    result = LocalBackend().enrich(transcript)
    assert result.action_items, "the script has a task"
    user_ids = {ana.username: ana.user_id, ben.username: ben.user_id}
    stored = insights_event(m, "whisper:tiny.en", "local", "rolling", 1, result, user_ids, int(time.time() * 1000))
    stored = stored.model_copy(update={"summary_detailed": f"### Opening\n- {MARKUP}\n"})
    await publish(web.settings, stored)
    async with ana.client() as http:
        await poll(lambda: http.get(f"/v1/meetings/{m}/summary"), lambda r: r.status_code == 200, "the summary")

    async with browser.playwright() as pw, browser.participant_browser(pw) as chromium:
        page, log = await browser.open_page(chromium, web.url)
        await browser.sign_in(page, ana.username, PASSWORD, f"/meetings/{m}")
        panel = page.locator("#live-summary")
        await expect(panel.locator(".summary-body h5")).to_have_text("Opening")  # "###" is the panel's h5
        await expect(panel.locator(".summary-body li")).to_have_text(re.compile(re.escape("<img src=x")))
        assert await panel.locator(".summary-body img, .summary-body a").count() == 0, "markup stays text"

        # A new enrichment, written while the page watches.
        pieces: list[str] = []
        LocalBackend().enrich(transcript, pieces.append)
        final = insights_event(m, "whisper:tiny.en", "local", "requested", 2, result, user_ids, int(time.time() * 1000))
        await publish(web.settings, chunk_event(m, RUN, final.enrichment_id, 0, pieces[0]))
        await expect(panel.locator(".summary-note")).to_have_text("Writing the summary…")
        await expect(panel.locator(".summary-body")).not_to_contain_text("Opening")
        await publish(web.settings, *(chunk_event(m, RUN, final.enrichment_id, seq, piece)
                                      for seq, piece in enumerate(pieces) if seq), final)  # fmt: skip
        await expect(panel.locator(".summary-note")).to_contain_text("asked for")
        tasks = page.locator("#live-tasks li.task")
        await expect(tasks).to_have_count(len(result.action_items))
        await expect(tasks.first).to_contain_text(result.action_items[0].description)

        await page.goto(f"/meetings/{m}/review")
        await expect(page.locator("#summary .summary-note")).to_contain_text("asked for")
        await expect(page.locator("#keywords .badge").first).to_be_visible()
        await expect(page.locator("#mood")).to_contain_text("Overall:")
        await expect(page.locator("#metrics tbody tr")).to_have_count(2)
        await expect(page.locator("#tasks .task").first).to_contain_text(result.action_items[0].description)
        topic = page.locator("#agenda a").first
        await topic.click()
        await expect(page.locator(f"#d-{dialogue_id}")).to_have_class(re.compile(r"\bhighlight\b"))

        await page.get_by_role("button", name="Summarize now").click()
        await expect(page.locator("#summary [role=status]")).to_have_text(re.compile("^Asked"))
        asked = await poll(lambda: requests_of(web.settings, m), lambda found: len(found) == 1, "the request")
        assert (asked[0].reason, asked[0].requested_by) == ("requested", ana.user_id)

        assert await page.evaluate("window.__pwned") is None
        assert await browser.violations(page) == []
        assert log.errors == []
