"""The web app in a real browser (Debian's chromium, driven by Playwright) against the whole pipeline: real
broker, chdb, Whisper. Three people sign in through the page, each in a browser of their own whose fake
microphone plays that person's part of a scripted meeting with lines spoken over each other."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from pathlib import Path

import numpy as np
import pytest
from playwright.async_api import expect

from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.textmetrics import word_error_rate
from tests.integration import browser
from tests.integration.conftest import Pipeline, poll
from tests.integration.meetings import PASSWORD, final_dialogue, open_meeting, register, username
from tests.integration.proxies import CuttingProxy

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not browser.chromium_available(), reason="needs Debian's chromium (scripts/setup.sh --test)"),
]

SCRIPT = (
    Line("ana", "Good morning everyone, let us look at the release plan for this week."),
    Line("ben", "The new search page has been ready for testing since yesterday evening."),
    Line("cho", "I will test it today and write down every problem that I find.", overlap_ms=1800),
    Line("ana", "Great, then we can ship the release on Thursday afternoon."),
    Line("ben", "Thursday works for me and for the whole support team.", overlap_ms=1500),
)
LEAD_IN_S = 1.0  # silence before the meeting starts in every track: the three microphones start together


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Path], dict[str, str]]:
    """Each speaker's WAV for their fake microphone, and the words each one says."""
    pcm, _placed = meeting_tracks(SCRIPT, Voice())
    lead = np.zeros(int(LEAD_IN_S * 16000), "<i2")
    folder = tmp_path_factory.mktemp("microphones")
    wavs = {name: browser.write_wav(folder / f"{name}.wav", np.concatenate([lead, track])) for name, track in pcm.items()}
    words = {name: " ".join(line.text for line in SCRIPT if line.speaker_id == name) for name in pcm}
    return wavs, words


async def test_three_people_see_each_other_live_in_their_browsers(
    pipeline: Pipeline, tracks: tuple[dict[str, Path], dict[str, str]]
) -> None:
    wavs, words = tracks
    before_ms = int(time.time() * 1000)  # no stream of the meeting has connected yet
    meeting = await open_meeting(pipeline.url, wavs, title="Release planning")
    names = {person.user_id: person.username for person in meeting.people.values()}
    room = f"/meetings/{meeting.meeting_id}"
    async with (
        browser.playwright() as pw, browser.participant_browser(pw, wavs["ana"]) as ana,
        browser.participant_browser(pw, wavs["ben"]) as ben,
        browser.participant_browser(pw, wavs["cho"]) as cho,
    ):
        pages = {}
        for name, b in (("ana", ana), ("ben", ben), ("cho", cho)):
            page, log = await browser.open_page(b, pipeline.url)
            await browser.sign_in(page, meeting.people[name].username, PASSWORD, room)
            await page.wait_for_selector(".state[data-state=live]")
            pages[name] = (page, log)

        await asyncio.gather(*(page.click("#start-mic") for page, _ in pages.values()))
        most_live_at_once = await _watch_live_boxes([p for p, _ in pages.values()], words, timeout_s=180)

        for name, (page, log) in pages.items():
            shown = await browser.boxes(page)
            me = meeting.people[name].user_id
            for box in shown:
                expected = "You" if box["speaker_id"] == me else names[box["speaker_id"]]
                assert box["name"] == expected, (name, box)
            said = {n: " ".join(b["text"] for b in shown if b["speaker_id"] == meeting.people[n].user_id)
                    for n in words}  # fmt: skip
            for speaker, text in words.items():
                assert word_error_rate(text, said[speaker]) <= 0.15, (name, speaker, said[speaker])
            assert await browser.violations(page) == [], name
            assert log.errors == [], (name, log.errors)
            _wall_clock_times_are_right([b["said_at"] for b in shown], before_ms)
        assert most_live_at_once >= 2, "the overlapping lines were never live in two boxes at once"
        await pages["ana"][0].screenshot(path=browser.artifact("meeting-room.png"), full_page=True)

        review, _ = pages["ana"]
        await review.goto(f"{room}/review")
        await review.wait_for_selector(".dialogues .box")
        await review.screenshot(path=browser.artifact("review.png"), full_page=True)
        # The review page streams no audio: each box's wall-clock time comes from the meeting's media epoch,
        # which the server learned from the ingest.
        _wall_clock_times_are_right([b["said_at"] for b in await browser.boxes(review)], before_ms)


def _wall_clock_times_are_right(said_at: list[int | None], before_ms: int) -> None:
    """Every box has a wall-clock time, in order, between the meeting's first connection and now."""
    assert said_at and None not in said_at, said_at
    assert before_ms <= said_at[0] and said_at == sorted(said_at) and said_at[-1] <= time.time() * 1000, said_at


async def _watch_live_boxes(pages: list, words: dict[str, str], timeout_s: float) -> int:
    """Poll every page until each shows every speaker's words settled; returns the most boxes one page
    showed live at the same moment."""
    most = 0
    expected_words = sum(len(w.split()) for w in words.values())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = True
        for page in pages:
            shown = await browser.boxes(page)
            most = max(most, sum(1 for b in shown if b["live"]))
            settled = [b for b in shown if not b["live"]]
            if any(b["live"] for b in shown) or sum(len(b["text"].split()) for b in settled) < 0.8 * expected_words:
                done = False
        if done:
            return most
        await asyncio.sleep(0.2)
    raise AssertionError(f"the pages did not settle: {[await browser.boxes(p) for p in pages]}")


PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


async def test_markup_in_chat_names_pictures_and_edits_renders_as_text(pipeline: Pipeline) -> None:
    import httpx

    meeting = await open_meeting(pipeline.url, ["ana", "mal"], title="Markup")
    ana, mal = meeting.people["ana"], meeting.people["mal"]
    async with httpx.AsyncClient(base_url=pipeline.url) as http:
        refused = await http.post("/v1/users", json={"username": PAYLOAD, "email": "m@example.com", "password": "x" * 12})
        assert refused.status_code == 422  # a username cannot hold markup at all
    async with mal.client() as http:
        picture = 'https://pictures.example.com/"><img/src=x/onerror=window.__pwned=1>'
        assert (await http.patch(f"/v1/users/{mal.user_id}", json={"profile_pic_url": picture})).status_code == 200
        assert (await http.post(f"/v1/meetings/{meeting.meeting_id}/chat", json={"text": PAYLOAD})).status_code == 202
    dialogue_id = await final_dialogue(pipeline.settings, meeting.meeting_id, mal.user_id)
    async with ana.client() as http:
        path = f"/v1/meetings/{meeting.meeting_id}/dialogues"
        await poll(lambda: http.get(path), lambda r: r.json()["dialogues"], "the dialogue")
        assert (await http.put(f"{path}/{dialogue_id}", json={"text": PAYLOAD})).status_code == 202
        await poll(lambda: http.get(path), lambda r: r.json()["dialogues"][0]["edited"], "the edit")

    async with browser.playwright() as pw, browser.participant_browser(pw) as chromium:
        page, log = await browser.open_page(chromium, pipeline.url)
        await browser.sign_in(page, ana.username, PASSWORD, f"/meetings/{meeting.meeting_id}")
        await page.wait_for_selector(".chat li")
        await page.wait_for_selector(".dialogues .box")
        assert PAYLOAD in await page.inner_text(".chat li p")
        assert PAYLOAD in await page.inner_text(".dialogues .box .words")
        async with mal.client() as http:  # pushed over the live socket to the open page this time
            await http.post(f"/v1/meetings/{meeting.meeting_id}/chat", json={"text": f"again {PAYLOAD}"})
        await page.wait_for_selector(".chat li:nth-child(2)")
        assert f"again {PAYLOAD}" in await page.inner_text(".chat li:nth-child(2) p")
        await page.goto(f"/meetings/{meeting.meeting_id}/review")
        await page.wait_for_selector(".dialogues .box .words")
        assert PAYLOAD in await page.inner_text(".dialogues .box .words")
        assert await page.evaluate("window.__pwned") is None
        assert await page.locator("img[src=x]").count() == 0
        assert await page.locator("script:not([src])").count() == 0
        # mal's picture is on an origin the policy does not allow: initials, and nothing for the policy to refuse
        assert await page.locator("img").count() == 0
        assert await browser.violations(page) == []
        assert log.errors == []


async def test_a_page_whose_sockets_drop_recovers_and_the_transcript_has_every_line_once(
    pipeline: Pipeline, tracks: tuple[dict[str, Path], dict[str, str]]
) -> None:
    """ben's browser reaches the server through a proxy that cuts every connection mid-meeting: his live
    socket and his microphone's. The page reconnects both by itself."""
    wavs, words = tracks
    meeting = await open_meeting(pipeline.url, wavs, title="Drops")
    room = f"/meetings/{meeting.meeting_id}"
    async with (
        CuttingProxy(pipeline.url) as proxy,
        browser.playwright() as pw,
        browser.participant_browser(pw, wavs["ana"]) as ana,
        browser.participant_browser(pw, wavs["ben"]) as ben,
        browser.participant_browser(pw, wavs["cho"]) as cho,
    ):
        pages = []
        for name, chromium in (("ana", ana), ("ben", ben), ("cho", cho)):
            page, log = await browser.open_page(chromium, proxy.url if name == "ben" else pipeline.url)
            await browser.sign_in(page, meeting.people[name].username, PASSWORD, room)
            await page.wait_for_selector(".state[data-state=live]")
            pages.append((name, page, log))
        await asyncio.gather(*(page.click("#start-mic") for _, page, _ in pages))
        await asyncio.sleep(LEAD_IN_S + 5.0)  # ben is speaking his first line
        # His acks stop coming back before the cut: the server holds durable audio past his last ack,
        # which he sends again when he resumes.
        proxy.hold_replies()
        await asyncio.sleep(1.5)
        assert proxy.cut() >= 2  # the live socket and the microphone's, at least
        ben_page = pages[1][1]
        await ben_page.wait_for_selector(".state[data-state=reconnecting]", timeout=5000)
        await _watch_live_boxes([page for _, page, _ in pages], words, timeout_s=180)
        states = await ben_page.eval_on_selector_all(".state", "els => els.map(e => e.dataset.state)")
        assert states == ["live", "live"], states
        shown = await browser.boxes(ben_page)
        assert len({b["id"] for b in shown}) == len(shown)

    async with meeting.people["ana"].client() as http:
        stored = (await http.get(f"{room.replace('/meetings', '/v1/meetings')}/dialogues")).json()["dialogues"]
    for name, text in words.items():
        said = " ".join(d["text"] for d in stored if d["speaker_id"] == meeting.people[name].user_id)
        assert word_error_rate(text, said) <= 0.15, (name, said)
        assert len(said.split()) <= len(text.split()) + 2, f"{name}'s words were doubled: {said}"


async def test_the_review_page_edits_resets_shows_history_exports_and_search_finds_it(pipeline: Pipeline) -> None:
    meeting = await open_meeting(pipeline.url, ["ana", "ben"], title="Review")
    ana, ben = meeting.people["ana"], meeting.people["ben"]
    dialogue_id = await final_dialogue(pipeline.settings, meeting.meeting_id, ben.user_id)
    async with ana.client() as http:
        path = f"/v1/meetings/{meeting.meeting_id}/dialogues"
        await poll(lambda: http.get(path), lambda r: r.json()["dialogues"], "the dialogue")

    async with browser.playwright() as pw, browser.participant_browser(pw) as chromium:
        page, log = await browser.open_page(chromium, pipeline.url)
        await browser.sign_in(page, ana.username, PASSWORD, f"/meetings/{meeting.meeting_id}/review")
        box = page.locator(f"#d-{dialogue_id}")
        assert await box.locator(".words").inner_text() == "Hello there."
        await box.get_by_role("button", name="Edit").click()
        await box.locator("textarea").fill("Hello there, everyone.")
        await box.get_by_role("button", name="Save").click()
        await page.wait_for_selector(f"#d-{dialogue_id} .badge:text('edited')", timeout=30000)
        assert await page.locator(f"#d-{dialogue_id} .words").inner_text() == "Hello there, everyone."
        await page.locator(f"#d-{dialogue_id}").get_by_role("button", name="History").click()
        history = page.locator(f"#d-{dialogue_id} .history li")
        await history.first.wait_for()
        assert "Hello there, everyone." in await history.first.inner_text()
        await page.locator(f"#d-{dialogue_id}").get_by_role("button", name="Reset").click()
        await expect(page.locator(f"#d-{dialogue_id} .words")).to_have_text("Hello there.", timeout=30000)

        async with page.expect_download() as download:
            await page.get_by_role("link", name="WebVTT").click()
        saved = await (await download.value).path()
        vtt = Path(saved).read_text()
        assert vtt.startswith("WEBVTT") and f"<v {ben.username}>Hello there." in vtt, vtt

        await page.fill("#topsearch input", "hello")
        await page.press("#topsearch input", "Enter")
        hit = page.locator(".results .result a").first
        await hit.wait_for()
        assert await hit.get_attribute("href") == f"/meetings/{meeting.meeting_id}/review#d={dialogue_id}"
        await hit.click()
        await expect(page.locator(f"#d-{dialogue_id}")).to_have_class(re.compile(r"\bhighlight\b"))
        assert log.errors == []


async def test_the_meetings_page_creates_a_meeting_with_its_agenda_and_words_to_listen_for(pipeline: Pipeline) -> None:
    owner = await register(pipeline.url, username("owner", secrets.token_hex(4)))
    async with browser.playwright() as pw, browser.participant_browser(pw) as chromium:
        page, log = await browser.open_page(chromium, pipeline.url)
        await browser.sign_in(page, owner.username, PASSWORD)
        await page.fill("#new-meeting input[name=title]", "Pricing review")
        await page.screenshot(path=str(browser.artifact("web-app/new-meeting-form.png")))
        await page.fill("#new-meeting textarea[name=agenda]", "Prices\n\nDiscounts\n")
        # Too many words: the API's 422 is shown on the page, which stays where it is.
        await page.fill("#new-meeting textarea[name=glossary]", "\n".join(f"term{i}" for i in range(101)))
        await page.click("#new-meeting button[type=submit]")
        await expect(page.locator("#new-meeting [role=alert]")).to_contain_text("glossary")
        assert page.url.rstrip("/") == pipeline.url.rstrip("/")
        await page.fill("#new-meeting textarea[name=glossary]", "Kubernetes, Tadhg\nNiamh Ó Briain,\n")
        await page.click("#new-meeting button[type=submit]")
        await page.wait_for_url(re.compile(r".*/meetings/mtg_[0-9a-f]+$"))
        meeting_id = page.url.rsplit("/", 1)[1]
        async with owner.client() as http:
            got = (await http.get(f"/v1/meetings/{meeting_id}")).json()
        assert (got["title"], got["agenda"], got["glossary"]) == (
            "Pricing review", ["Prices", "Discounts"], ["Kubernetes", "Tadhg", "Niamh Ó Briain"])

        # In the room the owner changes the words while the meeting goes on.
        words = page.locator("#glossary textarea[name=glossary]")
        await expect(words).to_have_value("Kubernetes\nTadhg\nNiamh Ó Briain")
        await words.fill("Kubernetes\nGrafana, Siobhán")
        await page.click("#glossary button[type=submit]")
        await expect(page.locator("#glossary [role=status]")).to_contain_text("Saved")
        await page.screenshot(path=str(browser.artifact("web-app/room-words-to-listen-for.png")), full_page=True)
        async with owner.client() as http:
            assert (await http.get(f"/v1/meetings/{meeting_id}")).json()["glossary"] == ["Kubernetes", "Grafana", "Siobhán"]
        await words.fill("x" * 101)
        await page.click("#glossary button[type=submit]")
        await expect(page.locator("#glossary [role=status]")).to_contain_text("glossary")
        assert not log.errors, log.errors
