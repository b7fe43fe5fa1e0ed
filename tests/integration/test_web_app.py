"""The web app in a real browser (Debian's chromium, driven by Playwright) against the whole pipeline: real
broker, chdb, Whisper. Three people sign in through the page, each in a browser of their own whose fake
microphone plays that person's part of a scripted meeting with lines spoken over each other."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from palaver.demo.script import Line
from palaver.demo.synth import Voice, meeting_tracks
from palaver.textmetrics import word_error_rate
from tests.integration import browser
from tests.integration.conftest import Pipeline
from tests.integration.meetings import PASSWORD, open_meeting

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
        assert most_live_at_once >= 2, "the overlapping lines were never live in two boxes at once"
        await pages["ana"][0].screenshot(path=browser.artifact("meeting-room.png"), full_page=True)

        review, _ = pages["ana"]
        await review.goto(f"{room}/review")
        await review.wait_for_selector(".dialogues .box")
        await review.screenshot(path=browser.artifact("review.png"), full_page=True)


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
