"""Mic-to-screen latency in a real browser: from a word's time in the fake microphone's WAV to the page's DOM
showing it, tentative and settled, with 1 and 3 participants.

Each participant is a chromium of its own (Debian's, driven by Playwright) whose fake microphone plays that
person's track of the demo meeting once; every page records, on each DOM change of its dialogue boxes, the
words each speaker's boxes show (all, and settled only) with the wall clock. Palaver runs as real processes
(web, one STT worker, merger) on the embedded broker and chdb.

How a word's time is known: the bundled Whisper model transcribes each speaker's whole track offline with
word timestamps; word k of a speaker ends at its timestamp. A page shows word k of speaker S when S's boxes
hold at least k + 1 words (tentative: any; settled: final utterances only). The track starts playing when
the page's getUserMedia resolves (recorded by a script injected before the page's own). Figures pool every
page: in a 3-person meeting each page sees all three speakers, its own voice included.

    palaver bench browser [--participants 1,3] [--plot] [--settle-s 20]
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import (
    OUT,
    Progress,
    bench_settings,
    percentile,
    start_pipeline,
    stop_pipeline,
    wait_for_log,
    wait_for_pipeline,
    write_results,
)
from palaver.demo.accounts import create_meeting, invite, sign_up
from palaver.demo.script import DEMO_MEETING
from palaver.demo.synth import SAMPLE_RATE, Voice, meeting_tracks
from palaver.streams.clients import ensure_topics

RECORDER = """
window.__bench = {micAt: null, frames: []};
const open = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
navigator.mediaDevices.getUserMedia = async (c) => { const s = await open(c); window.__bench.micAt = Date.now(); return s; };
const words = (t) => t.split(/\\s+/).filter(Boolean).length;
function snapshot() {
  const bySpeaker = {};
  for (const box of document.querySelectorAll('.dialogues .box')) {
    const s = box.dataset.speakerId;
    const all = words(box.querySelector('.words')?.textContent || '');
    const settled = [...box.querySelectorAll('.words .settled')].reduce((n, e) => n + words(e.textContent), 0);
    const entry = bySpeaker[s] || (bySpeaker[s] = {all: 0, settled: 0});
    entry.all += all; entry.settled += settled;
  }
  window.__bench.frames.push({t: Date.now(), s: bySpeaker});
}
new MutationObserver(snapshot).observe(document, {subtree: true, childList: true, characterData: true});
"""


def word_ends_s(pcm: np.ndarray, model_dir: str) -> list[float]:
    """The end time of each word Whisper hears in the track, offline, with word timestamps."""
    from faster_whisper import WhisperModel

    model = WhisperModel(model_dir, device="cpu", compute_type="int8")
    segments, _ = model.transcribe(pcm.astype(np.float32) / 32768, language="en", word_timestamps=True,
                                   vad_filter=True, beam_size=1)  # fmt: skip
    return [w.end for seg in segments for w in (seg.words or [])]


def shown_latencies(frames: list[dict[str, Any]], speaker_id: str, ends_s: list[float], mic_at_ms: int,
                    kind: str) -> list[float]:  # fmt: skip
    """Seconds from each word's end in the speaker's track to the first frame showing it (``kind``: all or
    settled); words never shown are left out (counted separately)."""
    out = []
    for k, end_s in enumerate(ends_s):
        spoken_ms = mic_at_ms + end_s * 1000
        first = next((f["t"] for f in frames if f["s"].get(speaker_id, {}).get(kind, 0) >= k + 1), None)
        if first is not None:
            out.append((first - spoken_ms) / 1000)
    return out


async def run_phase(url: str, tracks: dict[str, np.ndarray], ends: dict[str, list[float]], settle_s: float,
                    folder: Path) -> dict[str, Any]:  # fmt: skip
    from playwright.async_api import async_playwright

    from bench.chromium import CHROMIUM, FLAGS, microphone_flag, write_wav

    password = secrets.token_urlsafe(12)
    tag = secrets.token_hex(3)
    people = {name: await sign_up(url, f"{name}-{tag}", password) for name in tracks}
    owner, *guests = people.values()
    meeting_id = await create_meeting(owner, f"browser bench {len(tracks)}")
    for guest in guests:
        await invite(owner, meeting_id, guest)
    seconds = max(len(t) for t in tracks.values()) / SAMPLE_RATE
    async with async_playwright() as pw:
        browsers, pages = [], {}
        try:
            for name, pcm in tracks.items():
                wav = write_wav(folder / f"{name}-{tag}.wav", pcm)
                b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                             args=[*FLAGS, microphone_flag(wav)])  # fmt: skip
                browsers.append(b)
                context = await b.new_context(base_url=url)
                await context.add_init_script(RECORDER)
                page = await context.new_page()
                await page.goto(f"/signin?next=/meetings/{meeting_id}")
                await page.fill("#signin-form input[name=username]", people[name].username)
                await page.fill("#signin-form input[name=password]", password)
                await page.click("#signin-form button[type=submit]")
                await page.wait_for_selector(".state[data-state=live]")
                pages[name] = page
            await asyncio.gather(*(p.click("#start-mic") for p in pages.values()))
            await asyncio.sleep(seconds + settle_s)
            recorded = {name: await p.evaluate("window.__bench") for name, p in pages.items()}
        finally:
            for b in browsers:
                await b.close()
    lat: dict[str, list[float]] = {"all": [], "settled": []}
    words = missing_settled = 0
    for observer in recorded.values():
        for name, person in people.items():
            mic_at = recorded[name]["micAt"]
            for kind in lat:
                found = shown_latencies(observer["frames"], person.user_id, ends[name], mic_at, kind)
                lat[kind] += found
                if kind == "settled":
                    words += len(ends[name])
                    missing_settled += len(ends[name]) - len(found)
    return {
        "participants": len(tracks),
        "meeting_id": meeting_id,
        "words_observed": words,
        "words_never_settled": missing_settled,
        "tentative": _stats(lat["all"]),
        "settled": _stats(lat["settled"]),
        "samples": {k: [round(v, 3) for v in vs] for k, vs in lat.items()},
    }


def _stats(values: list[float]) -> dict[str, Any]:
    return {"n": len(values), "p50_s": round(percentile(values, 50), 3) if values else None,
            "p95_s": round(percentile(values, 95), 3) if values else None}  # fmt: skip


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for phase in results["phases"]:
        for kind, style in (("all", "--"), ("settled", "-")):
            values = sorted(phase["samples"][kind])
            if values:
                ax.plot(values, np.linspace(0, 1, len(values)), style,
                        label=f"{phase['participants']} participant(s), {'tentative' if kind == 'all' else 'settled'}")
    ax.set_xlabel("word's end in the microphone → shown in the page (s)")
    ax.set_ylabel("fraction of words")
    ax.set_title("Mic-to-screen latency in chromium")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


async def amain(args: argparse.Namespace) -> int:
    sizes = [int(x) for x in args.participants.split(",")]
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    say("synthesizing the demo meeting (hibari-tts) and timing its words offline ...")
    tracks, _ = meeting_tracks(DEMO_MEETING, Voice())
    with bench_settings("browser") as settings:
        ends = {name: word_ends_s(pcm, settings.model_dir) for name, pcm in tracks.items()}
        await ensure_topics(settings)
        started = start_pipeline(settings, "browser")
        url = f"http://127.0.0.1:{settings.api_port}"
        phases = []
        progress = Progress("browser bench", len(sizes))
        try:
            await asyncio.to_thread(wait_for_pipeline, started)
            await asyncio.to_thread(wait_for_log, started["web"][1], "Uvicorn running")
            with tempfile.TemporaryDirectory(prefix="palaver-browser-bench-") as tmp:
                for i, n in enumerate(sizes):
                    chosen = dict(list(tracks.items())[:n])
                    phases.append(await run_phase(url, chosen, {k: ends[k] for k in chosen}, args.settle_s, Path(tmp)))
                    progress.update(i + 1, f"{n} participant(s)")
        finally:
            progress.close()
            stop_pipeline(started)
    results = {"benchmark": "browser", "when": time.strftime("%Y-%m-%dT%H:%M:%S"), "phases": phases,
               "method": __doc__.split("\n\n")[1:3]}  # fmt: skip
    print(f"\n{'participants':>12} {'tentative p50/p95 s':>20} {'settled p50/p95 s':>18} {'never settled':>14}")
    for ph in phases:
        t, s = ph["tentative"], ph["settled"]
        print(f"{ph['participants']:>12} {t['p50_s']!s:>9}/{t['p95_s']!s:<10} {s['p50_s']!s:>8}/{s['p95_s']!s:<9} "
              f"{ph['words_never_settled']:>6} of {ph['words_observed']}")
    path = write_results("browser", results)
    print(f"wrote {path}")
    if args.plot:
        png = OUT / "browser.png"
        plot(results, png)
        print(f"wrote {png}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench browser", description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", default="1,3", help="meeting sizes to run, comma-separated (default 1,3)")
    parser.add_argument("--settle-s", type=float, default=20.0, help="seconds to keep watching after the audio ends")
    parser.add_argument("--plot", action="store_true", help="also write bench/out/browser.png")
    return asyncio.run(amain(parser.parse_args(argv)))
