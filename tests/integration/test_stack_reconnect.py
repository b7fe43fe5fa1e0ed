"""``palaver up`` keeps a meeting whole while its children are SIGKILLed in the middle of it.

One meeting, three speakers streaming at real time, is run twice with the same meeting id and user ids
(registered and created with the same Idempotency-Keys), each time on its own ``palaver up`` (own data
dir, broker and ports): once untouched, once with the stt child, then the
merger child, then the web child SIGKILLed mid-meeting (each after the one before is back). The web
child's death drops every speaker's socket: the clients reconnect (with a fresh ticket each, once the API
answers again) and resume with ``start_sample`` = the samples acknowledged, and send the audio again from
there.

What holds across these deaths, and is checked here: every child comes back by itself; every stream ends
with all its audio acknowledged; per speaker, the final utterances (their ids, which hash the stream and
the utterance's first sample, and their text) are those of the untouched run, none lost, none twice; the
stored transcript holds every final dialogue.

Not checked here: where the resumed streams sit on the meeting's timeline. The restarted ingest reads the
timelines back from Kafka (``ingest.timelines``) and places them where they were (docs/architecture.md,
"Time"; tests/integration/test_multi_ingest.py checks it). Absolute times are not compared between the
runs: each run's clock starts at its own connects.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import numpy as np
import pytest

from palaver.demo.accounts import Meeting
from palaver.demo.client import ABNORMAL_CLOSURE, StreamResult
from palaver.demo.run import wait_until_settled
from palaver.demo.script import DEMO_MEETING, Line, PlacedLine
from palaver.demo.synth import Voice, meeting_tracks
from palaver.textmetrics import word_error_rate
from tests.integration.meetings import open_meeting, stream_tracks
from tests.integration.test_stack_restarts import READY_NEEDLE, RunningUp, healthy, running_up

pytestmark = pytest.mark.integration

# The demo meeting and three more lines: about 33 s, time for three deaths and their restarts.
SCRIPT: tuple[Line, ...] = (
    *DEMO_MEETING,
    Line("alice", "Before we finish, who owns the release notes?"),
    Line("bob", "I can write them tonight and share them tomorrow morning."),
    Line("carol", "Perfect. Let us meet again on Friday to check the progress."),
)
# When each child dies, in seconds of the meeting (streamed at real time): mid-line each, and never
# before the child killed before it is ready again.
KILLS: tuple[tuple[str, float], ...] = (("stt", 2.5), ("merger", 7.5), ("web", 16.5))
EXTRA_WER = 0.05  # how much worse than the untouched run the killed run's text may read against the script


async def eventually(check: Callable[[], bool], what: str, timeout_s: float = 120) -> None:
    """Poll ``check`` (off the event loop: the streams go on meanwhile) until it holds."""
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def kill_children_one_by_one(up: RunningUp, started: float, log: list[str]) -> None:
    """SIGKILL each child of ``KILLS`` at its time, then wait until it is restarted and ready again."""
    pids = up.start_pids()
    for name, at_s in KILLS:
        await asyncio.sleep(max(0.0, started + at_s - time.monotonic()))
        needle = READY_NEEDLE.get(name, "Application startup complete")
        ready_before = up.log_count(name, needle)
        os.kill(pids[name], signal.SIGKILL)  # as the OOM killer would
        log.append(f"{time.monotonic() - started:.1f}s: killed {name} (pid {pids[name]})")
        await eventually(lambda: f"restarted {name}: pid" in up.output, f"the supervisor to restart {name}")  # noqa: B023
        await eventually(lambda: up.log_count(name, needle) > ready_before, f"the new {name} to be ready")  # noqa: B023
        if name == "web":
            await eventually(lambda: healthy(up.url), "/healthz after the web restart")
        log.append(f"{time.monotonic() - started:.1f}s: {name} is back")


async def run_meeting(up: RunningUp, tag: str, tracks: dict[str, np.ndarray],
                      during: Callable[[float], Awaitable[None]] | None = None,
                      ) -> tuple[Meeting, list[StreamResult], list[dict]]:  # fmt: skip
    """Open the meeting (the same ids for the same ``tag`` on any stack), stream every speaker's track at
    real time (running ``during`` meanwhile), wait until the dialogues are settled; returns the meeting, the
    streams' results and the final dialogues."""
    meeting = await open_meeting(up.url, tracks, tag=tag, meeting_key=f"kills-{tag}")
    started = time.monotonic()
    streams = asyncio.ensure_future(stream_tracks(up.url, meeting, tracks))
    if during is not None:
        await during(started)
    results = await streams
    owner = next(iter(meeting.people.values()))
    dialogues = await wait_until_settled(owner, meeting.meeting_id, len(tracks))
    return meeting, results, dialogues


def by_speaker(dialogues: list[dict], key: str) -> dict[str, list]:
    """Per speaker, in media order: the dialogues' utterance ids (flattened) or texts."""
    out: dict[str, list] = {}
    for d in dialogues:
        out.setdefault(d["speaker_id"], []).extend(d[key] if key == "utterance_ids" else [d[key]])
    return out


def script_wer(placed: list[PlacedLine], dialogues: list[dict]) -> float:
    return word_error_rate(" ".join(p.text for p in placed), " ".join(d["text"] for d in dialogues))


def stored_transcript(up: RunningUp, meeting: Meeting) -> dict:
    owner = next(iter(meeting.people.values()))
    response = httpx.get(f"{up.url}/v1/meetings/{meeting.meeting_id}/transcript", timeout=10,
                         headers={"Authorization": f"Bearer {owner.access_token}"})  # fmt: skip
    assert response.status_code == 200, response.text
    return response.json()


def test_a_meeting_survives_killing_stt_merger_and_web_without_losing_or_repeating_a_line(
    tmp_path: Path,
) -> None:
    tag = uuid.uuid4().hex[:8]
    tracks, placed = meeting_tracks(SCRIPT, Voice())

    with running_up(tmp_path / "untouched") as up:
        clean_meeting, _, clean = asyncio.run(run_meeting(up, tag, tracks))
        clean_transcript = stored_transcript(up, clean_meeting)

    kills: list[str] = []
    with running_up(tmp_path / "killed") as up:
        meeting, results, killed = asyncio.run(
            run_meeting(up, tag, tracks, lambda started: kill_children_one_by_one(up, started, kills))
        )
        killed_transcript = stored_transcript(up, meeting)
        # The same meeting and people on both stacks: utterance ids (which hash the stream, meeting/user)
        # compare between the runs.
        assert (meeting.meeting_id, meeting.names()) == (clean_meeting.meeting_id, clean_meeting.names())
        restarts = up.restarts()
        assert up.proc.poll() is None and "keeps dying" not in up.output, up.output
    story = "\n".join(kills)

    # Each child died once and came back by itself; the web child's clients reconnected and resumed.
    assert (restarts["stt"], restarts["merger"], restarts["web"]) == (1, 1, 1), restarts
    for (speaker, pcm), result in zip(tracks.items(), results, strict=True):
        assert (result.close_code, result.acked_samples) == (1000, len(pcm)), (speaker, result, story)
        assert len(result.reconnects) == 1, f"{speaker}: {result} (the meeting may have ended first)\n{story}"
        resumed = result.reconnects[0]
        assert resumed.after == f"close {ABNORMAL_CLOSURE}", resumed
        assert 0 < resumed.start_sample < len(pcm), resumed
        assert resumed.first_sample == resumed.start_sample, "the server resumes where the client asked"

    # The stored transcript is the untouched run's: per speaker the same utterances, once each.
    clean_ids, killed_ids = by_speaker(clean, "utterance_ids"), by_speaker(killed, "utterance_ids")
    assert killed_ids == clean_ids, f"{story}\nuntouched: {clean}\nkilled: {killed}"
    all_ids = [u for d in killed for u in d["utterance_ids"]]
    assert len(all_ids) == len(set(all_ids)), killed
    assert sorted(meeting.names()[s] for s in killed_ids) == sorted({line.speaker_id for line in SCRIPT})
    clean_text, killed_text = by_speaker(clean, "text"), by_speaker(killed, "text")
    for speaker in clean_text:
        difference = word_error_rate(" ".join(clean_text[speaker]), " ".join(killed_text[speaker]))
        assert difference <= EXTRA_WER, (speaker, clean_text[speaker], killed_text[speaker])
    assert script_wer(placed, killed) <= script_wer(placed, clean) + EXTRA_WER, (clean, killed)
    assert all(d["status"] == "final" for d in clean + killed)
    assert (clean_transcript["revision"], killed_transcript["revision"]) == (len(clean), len(killed))
