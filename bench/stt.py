"""STT benchmark: how many concurrent speakers one STT worker keeps within the lag targets, side by side
with a naive per-stream Whisper server.

N synthesized speakers (hibari-tts, a different long script each, short pauses; ``--speech real``: the
recordings of people of bench/real_speech.py instead) stream concurrently at real time through the running pipeline (``palaver run api ingest store``, ``palaver run stt``,
``palaver run merger`` as processes, one meeting per N). Lags, all against the wall time at which the
client had sent the audio an event covers (each stream's frames are timestamped as sent; media time maps
to a sample through the ``ready`` message's ``stream_start_ms``):

- partial lag (the STT issue's definition, judged against the target): per ``live`` dialogue event on the
  live WebSocket that advances a speaker's ``end_ms``, its arrival minus the time the client had sent the
  audio up to that ``end_ms``;
- caption delay (stricter, reported beside it): for every 100 ms of speech of every speaker, the arrival
  of the first live-socket event whose ``end_ms`` reaches it, minus when the client had sent it; it adds
  the wait between updates (about one partial interval) to each update's lag;
- final lag: per-utterance ``transcript.final`` events on the transcripts topic, their produce time
  (Kafka record timestamp) minus the send time of the audio up to their ``end_ms``;
- for information: the same on the topic's ``transcript.partial`` events; words settled: per utterance,
  the first live-socket event that carries it ``final``; box final: per dialogue, its first ``final``
  revision on the live socket (its words can no longer change), both against the audio up to their end;
  box wait: per dialogue, its first ``final`` revision against the first event that carried its last
  utterance settled (what the merger's finality rule adds to the STT's lag).
- quiet speakers (``--quiet``, ``--quiet-stop``; bench/quiet.py): extra participants who say a line and
  fall quiet (their stream carries silence, or ends) while the N talk on; per line, the arrival of their
  box's first ``final`` event on the live socket minus when the client sent the line's last word (target
  p95 <= 3 s). The figures above are the talkers'.

WER: each speaker's finals (by start time) against its script, and beside it the offline reference: the
same tracks transcribed whole with plain faster-whisper and the same model (bench/offline_reference.py;
the issue asks for streamed finals within 1.5 points of it). CPU% and peak RSS of the STT worker
process (from /proc) while the phase streams and drains. Lost audio: acknowledged samples != sent.
Targets: partial and final lag p95 <= 1.5 s, no lost audio. The baseline (bench/naive_baseline.py) gets
the same streams in-process and is measured on its partial hypotheses the same way. For each N the
baseline's phase runs just before Palaver's, after a probe of the machine's speed (the machines are
shared and their speed drifts), so the two systems of one N meet the same host.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from bench.harness import (
    OUT,
    Progress,
    write_results,
)
from bench.live import (
    FRAME_MS,
    TranscriptsLog,
    advancing_lags,
    lag_stats,
    read_live,
    running_pipeline,
    send_stream,
    utterance_settled_lags,
)
from bench.offline_reference import WITHIN_POINTS, OfflineOptions, compare, mean_wer, transcribe_tracks
from bench.quiet import GAP_S, STOP_TAIL_MS, QuietTrack, build_quiet_tracks, quiet_box_lags
from bench.speech import SAMPLE_RATE, SendLog, Track, build_tracks, coverage_lags, speech_frame_ends
from palaver.demo.accounts import open_meeting
from palaver.settings import Settings, bundled_whisper_model_dir

TARGET_LAG_S = 1.5
TARGET_QUIET_BOX_S = 3.0  # a quiet speaker's box final within this of the last word, p95


# --- the client side: stream with timestamps, read the live socket, read the transcripts topic ----------


# --- the STT worker's process -----------------------------------------------------------------------------


class ProcSampler:
    """CPU time and resident memory of one process, from /proc (Linux)."""

    def __init__(self, pid: int):
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")
        self.rss_max_mb = 0.0

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._tick  # utime, stime (all threads)

    def sample_rss(self) -> None:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                self.rss_max_mb = max(self.rss_max_mb, int(line.split()[1]) / 1024)

    async def watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            self.sample_rss()
            await asyncio.sleep(0.5)


# --- one Palaver phase --------------------------------------------------------------------------------------


def _dialogue_final_lags(live: list[tuple[float, dict[str, Any]]], logs: dict[str, SendLog]) -> list[float]:
    """Per dialogue box, the arrival of its first ``final`` revision on the live socket minus when the client
    sent the audio up to the box's end (its last word)."""
    first_final: dict[str, tuple[float, dict[str, Any]]] = {}
    for ts, e in live:
        if e.get("status") == "final":
            first_final.setdefault(e["dialogue_id"], (ts, e))
    return [ts - s for ts, e in first_final.values()
            if e["speaker_id"] in logs and (s := logs[e["speaker_id"]].sent_by_media_ms(e["end_ms"]))]  # fmt: skip


def _box_final_waits(live: list[tuple[float, dict[str, Any]]]) -> list[float]:
    """Per dialogue box, the arrival of its first ``final`` revision minus the arrival of the first event
    that carried its last utterance settled: how long the merger's finality rule held its settled words
    back (the STT's lag left out)."""
    settled: dict[str, float] = {}
    waits: dict[str, float] = {}
    for ts, e in live:
        for u in e.get("utterances") or ():
            if u["final"]:
                settled.setdefault(u["utterance_id"], ts)
        if e.get("status") == "final" and e["dialogue_id"] not in waits and e.get("utterances"):
            waits[e["dialogue_id"]] = ts - max(settled[u["utterance_id"]] for u in e["utterances"])
    return list(waits.values())


async def palaver_phase(url: str, talkers: list[Track], transcripts: TranscriptsLog, proc: ProcSampler,
                        on_frame: Any, drain_timeout_s: float, quiet: list[QuietTrack] = ()) -> dict[str, Any]:  # fmt: skip
    """One meeting: the talkers, and the quiet speakers beside them (bench/quiet.py)."""
    # One account per speaker (named after its track), the first owns the meeting: made before the clock
    # starts. Events carry user ids as speaker ids; they are read back as the tracks' names.
    tracks = [*talkers, *(q.track for q in quiet)]
    meeting = await open_meeting(url, [t.speaker_id for t in tracks], f"STT bench, {len(tracks)} speakers")
    meeting_id, names = meeting.meeting_id, meeting.names()
    live: list[tuple[float, dict[str, Any]]] = []
    stop_live, connected, stop_watch = asyncio.Event(), asyncio.Event(), asyncio.Event()
    live_task = asyncio.create_task(read_live(url, meeting, live, stop_live, connected))
    await asyncio.wait_for(connected.wait(), 30)
    proc.rss_max_mb = 0.0
    watcher = asyncio.create_task(proc.watch(stop_watch))
    cpu0, wall0 = proc.cpu_s(), time.monotonic()
    logs = {t.speaker_id: SendLog(SAMPLE_RATE * FRAME_MS // 1000) for t in tracks}
    streamed = await asyncio.gather(*(send_stream(url, meeting_id, meeting.people[t.speaker_id], t, logs[t.speaker_id],
                                                  on_frame) for t in tracks))  # fmt: skip
    deadline = time.monotonic() + drain_timeout_s
    speakers = set(names)  # the user ids
    while transcripts.stopped(meeting_id) != speakers and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    drained = transcripts.stopped(meeting_id) == speakers
    cpu_percent = (proc.cpu_s() - cpu0) / (time.monotonic() - wall0) * 100
    stop_watch.set()
    await watcher
    # With every stream stopped the merger finalizes every dialogue; give it a moment to say so.
    settle = time.monotonic() + 15
    while time.monotonic() < settle:
        seen = {e["dialogue_id"] for _, e in live}
        finished = {e["dialogue_id"] for _, e in live if e["status"] in ("final", "retracted")}
        if seen and seen <= finished:
            break
        await asyncio.sleep(0.2)
    stop_live.set()
    await live_task

    events = [(ts, {**e, "speaker_id": names.get(e.get("speaker_id", ""), e.get("speaker_id"))})
              for ts, e in transcripts.by_meeting.get(meeting_id, [])]  # fmt: skip
    finals: dict[str, tuple[float, dict[str, Any]]] = {}
    for ts, e in events:
        if e["event"] == "transcript.final":
            finals.setdefault(e["utterance_id"], (ts, e))
    # The talkers' figures, comparable with runs without quiet speakers; the quiet ones' come apart.
    heard = {t.speaker_id: logs[t.speaker_id] for t in talkers}
    final_lags = [ts - s for ts, e in finals.values()
                  if e["speaker_id"] in heard and (s := heard[e["speaker_id"]].sent_by_media_ms(e["end_ms"]))]  # fmt: skip
    topic_partials = [(ts, e["speaker_id"], e["end_ms"]) for ts, e in events if e["event"] == "transcript.partial"]
    live_partials = [(ts, e["speaker_id"], e["end_ms"]) for ts, e in live if e.get("status") == "live"]
    dialogue_final_lags = _dialogue_final_lags(live, heard)
    box_final_waits = _box_final_waits([(ts, e) for ts, e in live if e.get("speaker_id") in heard])
    words_settled_lags = utterance_settled_lags(live, heard)
    quiet_lags = quiet_box_lags(live, logs, list(quiet))
    wers, said = {}, {}
    for t in tracks:
        own = sorted((e["start_ms"], e["end_ms"], e["text"]) for _, e in finals.values() if e["speaker_id"] == t.speaker_id)
        said[t.speaker_id] = own
        wers[t.speaker_id] = round(t.wer(" ".join(text for _, _, text in own)), 4)
    sent = sum(s["sent"] for s in streamed)
    acked = sum(s["acked"] for s in streamed)
    visible, missed = [], 0
    for t in talkers:
        log = logs[t.speaker_id]
        updates = [(ts, (e["end_ms"] - log.stream_start_ms) * SAMPLE_RATE // 1000) for ts, e in live
                   if e["speaker_id"] == t.speaker_id and e.get("status") in ("live", "final")]  # fmt: skip
        lags, not_reached = coverage_lags(updates, log, speech_frame_ends(t.pcm, log.frame_samples))
        visible += lags
        missed += not_reached
    caption = {**lag_stats(visible), "instants_never_shown": missed}
    partial = lag_stats(advancing_lags(live_partials, heard))
    final = lag_stats(final_lags)
    lost = acked != sent or any(s["close_code"] != 1000 for s in streamed)
    talking = [t.speaker_id for t in talkers]
    quiet_rows = {}
    if quiet:
        quiet_rows = {
            "quiet_speakers": sum(not q.stops for q in quiet), "leaving_speakers": sum(q.stops for q in quiet),
            "quiet_box_final_lag": {**lag_stats(quiet_lags["muted_box_final"]), "never_final": quiet_lags["muted_never"]},
            "quiet_words_settled_lag": lag_stats(quiet_lags["muted_settled"]),
            "quiet_box_final_wait": lag_stats(quiet_lags["muted_wait"]),
            "leaving_box_final_lag": {**lag_stats(quiet_lags["leaving_box_final"]),
                                      "never_final": quiet_lags["leaving_never"]},
            "leaving_words_settled_lag": lag_stats(quiet_lags["leaving_settled"]),
            "leaving_box_final_wait": lag_stats(quiet_lags["leaving_wait"]),
            "quiet_wer": round(float(np.mean([wers[q.track.speaker_id] for q in quiet])), 4),
        }
    return {
        "speakers": len(talkers), **quiet_rows, "meeting_id": meeting_id,
        "audio_s_per_speaker": round(float(np.mean([t.seconds for t in talkers])), 1),
        "partial_lag": partial, "final_lag": final, "caption_delay": caption,
        "topic_partial_lag": lag_stats(advancing_lags(topic_partials, heard)),
        "dialogue_final_lag": lag_stats(dialogue_final_lags), "words_settled_lag": lag_stats(words_settled_lags),
        "box_final_wait": lag_stats(box_final_waits),
        "wer": round(float(np.mean([wers[name] for name in talking])), 4), "wer_per_speaker": wers,
        "finals_per_speaker": said,  # (start_ms, end_ms, text) of each final, in order
        "stt_cpu_percent": round(cpu_percent, 1), "stt_rss_max_mb": round(proc.rss_max_mb, 1),
        "sent_samples": sent, "acked_samples": acked, "lost_audio": lost, "drained": drained,
        "holds_targets": bool(drained and not lost and _within(partial) and _within(final)),
    }  # fmt: skip


def _within(stats: dict[str, Any]) -> bool:
    return stats["p95_s"] is not None and stats["p95_s"] <= TARGET_LAG_S


@contextlib.asynccontextmanager
async def palaver_pipeline(args: argparse.Namespace, tracks: list[Track], progress: Any,
                           quiet: list[QuietTrack]) -> AsyncIterator[Callable[[list[Track]], Awaitable[dict[str, Any]]]]:  # fmt: skip
    """The running pipeline, warmed up, as a function that runs one phase of N talking speakers through it,
    with the ``quiet`` speakers beside them."""
    async with running_pipeline("stt") as pipeline:
        url, transcripts = pipeline.url, pipeline.transcripts
        proc = ProcSampler(pipeline.started["stt"][0].pid)
        # Warm-up (not measured): the worker joins its group and loads the model's caches.
        warm = Track("warmup", tracks[0].pcm[: 4 * SAMPLE_RATE], "")
        await palaver_phase(url, [warm], transcripts, proc, None, 120)

        async def phase(speakers: list[Track]) -> dict[str, Any]:
            row = await palaver_phase(url, speakers, transcripts, proc, progress.frame, args.drain_timeout, quiet)
            progress.phase_done([*speakers, *(q.track for q in quiet)])
            await asyncio.sleep(2)
            return row

        yield phase


async def run_sweep(args: argparse.Namespace, tracks: list[Track], progress: Any,
                    probe: MachineProbe, quiet: list[QuietTrack] = ()) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:  # fmt: skip
    """(Palaver rows, baseline rows). Each N runs the baseline and then Palaver back to back, after a probe
    of the machine's speed, so the two systems of one N meet the same host (these machines are shared, and
    their speed drifts by 2x within an hour). The pipeline stands idle while the baseline runs: the other
    CPU load of the machine during each baseline phase is recorded beside it."""
    server = await asyncio.to_thread(naive_server, args) if args.system != "palaver" else None
    palaver: list[dict[str, Any]] = []
    baseline: list[dict[str, Any]] = []
    pipeline = palaver_pipeline(args, tracks, progress, list(quiet)) if args.system != "baseline" else _no_pipeline()
    async with pipeline as phase:
        for n in args.speakers:
            probe_ms = (await asyncio.to_thread(probe.measure, 3))["min_ms"]
            if server is not None:
                with _stolen() as steal:
                    row = await asyncio.to_thread(naive_phase, args, server, tracks[:n], progress)
                baseline.append({**row, "machine_probe_ms": probe_ms, **steal})
            if phase is not None:
                with _stolen() as steal:
                    row = await phase(tracks[:n])
                palaver.append({**row, "machine_probe_ms": probe_ms, **steal})
    return palaver, baseline


@contextlib.contextmanager
def _stolen() -> Iterator[dict[str, float]]:
    """Yields a dict that holds, once the block ends, ``steal_percent``: the CPU the hypervisor gave to
    other guests during the block (100 = one core; a shared host that is busy shows here)."""
    figures: dict[str, float] = {}
    stolen0, wall0 = steal_s(), time.monotonic()
    yield figures
    figures["steal_percent"] = round((steal_s() - stolen0) / (time.monotonic() - wall0) * 100, 1)


@contextlib.asynccontextmanager
async def _no_pipeline() -> AsyncIterator[None]:
    yield None


# --- the baseline ----------------------------------------------------------------------------------------


def naive_server(args: argparse.Namespace) -> Any:
    """The naive baseline server, warmed up: one decode lane with as many threads as a Palaver worker
    decodes on (its lanes x threads)."""
    from bench.naive_baseline import NaiveStreamingServer

    defaults = Settings()
    threads = defaults.whisper_threads * defaults.stt_decode_lanes
    server = NaiveStreamingServer(bundled_whisper_model_dir(), threads=threads,
                                  compute_type=defaults.whisper_compute_type, beam_size=defaults.whisper_beam_size,
                                  window_s=args.baseline_window)  # fmt: skip
    server.warm_up()
    return server


def naive_phase(args: argparse.Namespace, server: Any, tracks: list[Track], progress: Any) -> dict[str, Any]:
    from bench.naive_baseline import run_baseline

    n = len(tracks)
    base, total = progress.done_s, sum(t.seconds for t in tracks)

    def fed(seconds: float) -> None:
        progress.at(base + min(seconds * n, total))

    busy0, own0, wall0 = machine_busy_s(), time.process_time(), time.monotonic()
    run = run_baseline(server, tracks, FRAME_MS, fed)
    other = (machine_busy_s() - busy0) - (time.process_time() - own0)
    progress.phase_done(tracks)
    caption = {**lag_stats(run.coverage_lags_s), "instants_never_shown": run.never_shown}
    lag = lag_stats(run.lags_s)
    # A hypothesis is the whole window's transcript: it is the stream's transcript when the speech fits
    # the window.
    fits = all(t.seconds <= args.baseline_window for t in tracks)
    wer = [t.wer(run.last_text.get(t.speaker_id, "")) for t in tracks] if fits else []
    return {"speakers": n, "partial_lag": lag, "caption_delay": caption,
            "hypotheses": len(run.lags_s),
            "wer": round(float(np.mean(wer)), 4) if wer else None,
            "process_cpu_percent": round(run.cpu_percent, 1), "wall_s": round(run.wall_s, 1),
            "other_cpu_percent": round(max(0.0, other) / (time.monotonic() - wall0) * 100, 1),
            "holds_targets": _within(lag)}  # fmt: skip


def machine_busy_s() -> float:
    """CPU seconds this machine's processes have run (all cores), from /proc/stat; not the time the
    hypervisor gave to other guests (steal)."""
    user, nice, system, _idle, _iowait, irq, softirq, _steal = _cpu_ticks()
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def steal_s() -> float:
    """CPU seconds the hypervisor gave to other guests while this machine wanted them (all cores)."""
    return _cpu_ticks()[7] / os.sysconf("SC_CLK_TCK")


def _cpu_ticks() -> list[int]:
    return [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


# --- the offline reference ------------------------------------------------------------------------------------


def run_offline(tracks: list[Track]) -> dict[str, Any]:
    """Each track transcribed whole, offline, with the STT worker's model settings (cached per track). Runs
    before the timed phases: it would take CPU from the pipeline it is compared with."""
    settings = Settings()  # the same PALAVER_* environment the worker processes get
    options = OfflineOptions(model_dir=settings.model_dir, compute_type=settings.whisper_compute_type,
                             threads=settings.whisper_threads * settings.stt_decode_lanes,
                             beam_size=settings.whisper_beam_size,
                             language=settings.stt_language, device=settings.whisper_device)  # fmt: skip
    bar = Progress("offline reference", int(sum(t.seconds for t in tracks)))
    started = time.monotonic()
    per_speaker = transcribe_tracks(tracks, options, lambda s: bar.update(int(s), "seconds of audio"))
    bar.close()
    return {"options": asdict(options), "within_points": WITHIN_POINTS, "wall_s": round(time.monotonic() - started, 1),
            "per_speaker": per_speaker}  # fmt: skip


class MachineProbe:
    """How fast this machine decodes right now: one batched Whisper call over eight 6 s clips, with word
    timings, as the worker decodes finals (the worker's model and compute type, on a fixed 2 threads in one
    lane, so figures compare across runs and settings), on fixed speech (the 8-speaker tracks, whatever the
    sweep). The machines are shared: a run taken while the host is busy is slower
    throughout, and this figure, taken before and after the phases, says so. Compare runs only at similar
    probe figures. The model and clips are loaded once, for both measurements."""

    def __init__(self) -> None:
        from stt_workers.batched_whisper import BatchedWhisper

        settings = Settings()
        self._language = settings.stt_language
        self._whisper = BatchedWhisper(settings.model_dir, settings.whisper_compute_type, settings.whisper_device,
                                       threads=2, decode_mode=settings.whisper_decode)  # fmt: skip
        self._clips = [(t.pcm[SAMPLE_RATE : 7 * SAMPLE_RATE] / 32768).astype(np.float32) for t in build_tracks(8, 20)]
        self._whisper.decode(self._clips[:1], self._language)  # warm-up

    def measure(self, repeats: int = 5) -> dict[str, Any]:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            self._whisper.decode(self._clips, self._language, True)
            times.append(time.perf_counter() - started)
        return {"what": "one batched decode of 8 x 6 s clips with word timings", "repeats": repeats,
                "min_ms": round(min(times) * 1000), "median_ms": round(float(np.median(times)) * 1000)}  # fmt: skip


def add_offline(rows: list[dict[str, Any]], offline: dict[str, Any], tracks: list[Track]) -> None:
    """Each Palaver row gets the offline WER of its speakers and the difference in points."""
    for row in rows:
        row.update(compare(row["wer"], mean_wer(offline["per_speaker"], tracks[: row["speakers"]])))


# --- report ------------------------------------------------------------------------------------------------


class SweepProgress:
    """Seconds of speech streamed over the whole run (both systems), on one bar."""

    def __init__(self, total_s: float):
        self._bar = Progress("bench stt", int(total_s))
        self.done_s = 0.0
        self._phase_start = 0.0
        self._frames = 0

    def at(self, seconds: float) -> None:
        self._bar.update(int(seconds), "speaker-seconds streamed")

    def frame(self) -> None:
        self._frames += 1
        self.at(self.done_s + self._frames * FRAME_MS / 1000)

    def phase_done(self, tracks: list[Track]) -> None:
        self.done_s += sum(t.seconds for t in tracks)
        self._frames = 0
        self.at(self.done_s)

    def close(self) -> None:
        self._bar.close()


def largest_sustainable(rows: list[dict[str, Any]]) -> int:
    """The largest N whose run held the targets, and every smaller N too."""
    best = 0
    for row in sorted(rows, key=lambda r: r["speakers"]):
        if not row["holds_targets"]:
            break
        best = row["speakers"]
    return best


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lags, wer, cpu) = plt.subplots(1, 3, figsize=(15, 4.2))
    pal, naive = results["palaver"], results["baseline"]

    def series(rows: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
        pts = [(r["speakers"], r[key]["p95_s"]) for r in rows if r[key]["p95_s"] is not None]
        return [n for n, _ in pts], [v for _, v in pts]

    for rows, key, label, style in ((pal, "partial_lag", "Palaver partial (live socket)", "o-"),
                                    (pal, "final_lag", "Palaver final (per utterance)", "s-"),
                                    (pal, "caption_delay", "Palaver caption delay", "o:"),
                                    (naive, "partial_lag", "naive baseline partial", "^--"),
                                    (naive, "caption_delay", "naive baseline caption delay", "^:")):  # fmt: skip
        if rows:
            lags.plot(*series(rows, key), style, label=label)
    for key, label, style in (("quiet_box_final_lag", "Palaver quiet speaker's box final (muted)", "D-"),
                              ("leaving_box_final_lag", "Palaver quiet speaker's box final (stream ends)", "D:")):
        rows = [r for r in pal if r.get(key) and r[key]["p95_s"] is not None]
        if rows:
            lags.plot(*series(rows, key), style, label=label)
    lags.axhline(TARGET_LAG_S, color="tab:red", linestyle=":", label="target p95 1.5 s")
    if any(r.get("quiet_box_final_lag") or r.get("leaving_box_final_lag") for r in pal):
        lags.axhline(TARGET_QUIET_BOX_S, color="tab:purple", linestyle=":", label="quiet box final target p95 3 s")
    lags.set_yscale("log")
    lags.set_xlabel("concurrent speakers (N)")
    lags.set_ylabel("lag p95 (s)")
    lags.set_title("Lag p95 vs concurrent speakers")
    lags.legend(fontsize=8)
    if pal:
        wer.plot([r["speakers"] for r in pal], [r["wer"] for r in pal], "o-", label="Palaver finals")
    offline = [(r["speakers"], r["offline_wer"]) for r in pal if r.get("offline_wer") is not None]
    if offline:
        wer.plot([n for n, _ in offline], [w for _, w in offline], "s:", color="black",
                 label="offline, same model (whole track)")  # fmt: skip
        wer.fill_between([n for n, _ in offline], [w for _, w in offline],
                         [w + WITHIN_POINTS / 100 for _, w in offline], color="tab:green", alpha=0.15,
                         label=f"offline + {WITHIN_POINTS} points")  # fmt: skip
    base_wer = [(r["speakers"], r["wer"]) for r in naive if r["wer"] is not None]
    if base_wer:
        wer.plot([n for n, _ in base_wer], [w for _, w in base_wer], "^--", label="baseline last hypothesis")
    wer.set_xlabel("concurrent speakers (N)")
    wer.set_ylabel("WER")
    wer.set_title("Word error rate vs script")
    wer.legend(fontsize=8)
    if pal:
        cpu.bar([str(r["speakers"]) for r in pal], [r["stt_cpu_percent"] for r in pal], color="tab:blue")
        for i, r in enumerate(pal):
            cpu.text(i, r["stt_cpu_percent"], f"{r['stt_rss_max_mb']:.0f} MB", ha="center", va="bottom", fontsize=8)
    cpu.set_xlabel("concurrent speakers (N)")
    cpu.set_ylabel("STT worker CPU % (100 = one core)")
    cpu.set_title("STT worker CPU (label: peak RSS)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_table(results: dict[str, Any]) -> None:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.2f}"

    print(f"\n{'system':<9} {'N':>2} {'partial p50/p95 s':>18} {'final p50/p95 s':>16} {'WER':>6} "
          f"{'offline':>7} {'+pts':>6} {'<=1.5':>5} {'STT CPU%':>8} {'RSS MB':>7} {'lost':>5} {'ok':>4} {'probe ms':>8} {'steal%':>6}"
          f" {'settled p50/p95 s':>17} {'box final p50/p95 s':>19} {'box wait p50/p95 s':>18}")  # fmt: skip
    for r in results["palaver"]:
        p, fl = r["partial_lag"], r["final_lag"]
        ws, bf, bw = r["words_settled_lag"], r["dialogue_final_lag"], r["box_final_wait"]
        print(f"{'palaver':<9} {r['speakers']:>2} {f(p['p50_s']) + ' / ' + f(p['p95_s']):>18} "
              f"{f(fl['p50_s']) + ' / ' + f(fl['p95_s']):>16} {r['wer']:>6.3f} {_offline_cells(r)} "
              f"{r['stt_cpu_percent']:>8.0f} "
              f"{r['stt_rss_max_mb']:>7.0f} {'yes' if r['lost_audio'] else 'no':>5} "
              f"{'yes' if r['holds_targets'] else 'no':>4} {r['machine_probe_ms']:>8} {r['steal_percent']:>6.0f}"
              f" {f(ws['p50_s']) + ' / ' + f(ws['p95_s']):>17} {f(bf['p50_s']) + ' / ' + f(bf['p95_s']):>19}"
              f" {f(bw['p50_s']) + ' / ' + f(bw['p95_s']):>18}")  # fmt: skip
    for r in results["baseline"]:
        p = r["partial_lag"]
        print(f"{'baseline':<9} {r['speakers']:>2} {f(p['p50_s']) + ' / ' + f(p['p95_s']):>18} {'-':>16} "
              f"{f(r['wer']):>6} {'-':>7} {'-':>6} {'-':>5} {r['process_cpu_percent']:>8.0f} {'-':>7} {'-':>5} "
              f"{'yes' if r['holds_targets'] else 'no':>4} {r['machine_probe_ms']:>8} {r['steal_percent']:>6.0f}")  # fmt: skip
    quiet = [r for r in results["palaver"] if "quiet_box_final_lag" in r]
    if quiet:
        print(f"\nquiet speakers beside the N talkers, box final on the live socket after their line's last word "
              f"(target p95 <= {TARGET_QUIET_BOX_S} s); words settled likewise; never: lines whose box never showed final")
        print("and box wait: box final minus words settled, per line (the merger's part)")
        print(f"{'N':>2} {'kind':>7} {'speakers':>8} {'box final p50/p95 s':>19} {'settled p50/p95 s':>17} "
              f"{'box wait p50/p95 s':>18} {'lines':>5} {'never':>5}")  # fmt: skip
        for r in quiet:
            for kind, key in (("muted", "quiet"), ("leaving", "leaving")):
                bf, ws, bw = r[f"{key}_box_final_lag"], r[f"{key}_words_settled_lag"], r[f"{key}_box_final_wait"]
                print(f"{r['speakers']:>2} {kind:>7} {r[f'{key}_speakers']:>8} {f(bf['p50_s']) + ' / ' + f(bf['p95_s']):>19} "
                      f"{f(ws['p50_s']) + ' / ' + f(ws['p95_s']):>17} {f(bw['p50_s']) + ' / ' + f(bw['p95_s']):>18} "
                      f"{bf['samples']:>5} {bf['never_final']:>5}")  # fmt: skip
    s = results["summary"]
    print(f"\nlargest N within targets (p95 lags <= {TARGET_LAG_S} s, no lost audio): Palaver {s['palaver_max_speakers']}, "
          f"naive baseline {s['baseline_max_speakers']}; ratio {s['ratio'] if s['ratio'] is not None else '-'}")  # fmt: skip
    if s.get("streamed_within_offline") is not None:
        print(f"streamed finals within {WITHIN_POINTS} WER points of offline transcription at every N: "
              f"{'yes' if s['streamed_within_offline'] else 'no'} (+pts: streamed minus offline WER, in points)")  # fmt: skip
    probe = results.get("machine_probe")
    if probe:
        print(f"machine probe ({probe['before']['what']}): {probe['before']['min_ms']} ms before the phases, "
              f"{probe['after']['min_ms']} ms after (min of {probe['before']['repeats']}; a busy host shows here first); "
              f"'probe ms': the same, min of 3, just before each N's two phases; 'steal%': CPU the hypervisor "
              f"gave other guests during the phase (100 = one core)")  # fmt: skip


def _offline_cells(row: dict[str, Any]) -> str:
    if row.get("offline_wer") is None:
        return f"{'-':>7} {'-':>6} {'-':>5}"
    within = "yes" if row["within_offline_bound"] else "no"
    return f"{row['offline_wer']:>7.3f} {row['wer_vs_offline_points']:>+6.2f} {within:>5}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench stt", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--speakers", default="1,2,3,4,6,8,12,16",
                        help="sweep of concurrent speakers (default 1,2,3,4,6,8,12,16)")  # fmt: skip
    parser.add_argument("--seconds", type=float, default=30, help="seconds of speech per speaker (default 30)")
    parser.add_argument("--speech", choices=("tts", "real"), default="tts",
                        help="what the speakers say: synthesized scripts (tts, the default) or the real "
                             "recordings of bench/real_speech.py, speaker i the i-th of its five tracks in turn "
                             "(25-30 s each; --seconds does not apply; fetched once with "
                             "`python -m bench.real_speech --fetch`)")  # fmt: skip
    parser.add_argument("--quiet", type=int, default=0, metavar="K",
                        help="K more speakers in each Palaver phase who say a line, then send silence (a muted "
                             "browser) while the others talk, and so on; measures their box-final latency "
                             "(default 0; bench/quiet.py)")  # fmt: skip
    parser.add_argument("--quiet-stop", type=int, default=0, metavar="K",
                        help="K more speakers in each Palaver phase who say one line and end their stream "
                             "(default 0)")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="smoke run: --speakers 1,2 --seconds 15")
    parser.add_argument("--system", choices=("both", "palaver", "baseline"), default="both",
                        help="which systems to run (default both)")  # fmt: skip
    parser.add_argument("--baseline-window", type=float, default=30.0,
                        help="seconds of audio the baseline re-decodes (default 30)")  # fmt: skip
    parser.add_argument("--drain-timeout", type=float, default=90.0,
                        help="seconds to wait for a phase's last finals after its streams end (default 90)")  # fmt: skip
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # leader elections on fresh topics are expected
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # a line per transcribe call, over the bars
    if args.quick:
        args.speakers, args.seconds = "1,2", 15.0
    args.speakers = sorted({int(n) for n in str(args.speakers).split(",") if n.strip()})
    if not args.speakers or min(args.speakers) < 1:
        parser.error("--speakers: a comma-separated list of positive integers")

    if args.speech == "real":
        from bench.real_speech import NotFetched, stream_tracks

        try:
            tracks = stream_tracks(max(args.speakers))
        except NotFetched as exc:
            parser.error(f"--speech real: {exc}")
    else:
        tracks = build_tracks(max(args.speakers), args.seconds)
    quiet = build_quiet_tracks(args.quiet, args.quiet_stop, min(t.seconds for t in tracks))
    systems = 2 if args.system == "both" else 1
    quiet_s = sum(q.track.seconds for q in quiet) if args.system != "baseline" else 0
    progress = SweepProgress(sum(systems * sum(t.seconds for t in tracks[:n]) + quiet_s for n in args.speakers))
    started = time.monotonic()
    offline = run_offline(tracks) if args.system != "baseline" else None  # before the timed phases
    probe = MachineProbe()
    probe_before = probe.measure()
    palaver, baseline = asyncio.run(run_sweep(args, tracks, progress, probe, quiet))
    progress.close()
    probe_after = probe.measure()
    if offline is not None:
        add_offline(palaver, offline, tracks)
    pal_n, base_n = largest_sustainable(palaver), largest_sustainable(baseline)
    results = {
        "benchmark": "stt",
        "target_lag_p95_s": TARGET_LAG_S,
        "speakers": args.speakers,
        "speech": args.speech,
        "speech_s_per_speaker": args.seconds if args.speech == "tts" else [round(t.seconds, 1) for t in tracks],
        "quiet_speakers": args.quiet,
        "leaving_speakers": args.quiet_stop,
        "target_quiet_box_final_p95_s": TARGET_QUIET_BOX_S,
        "cpu_count": os.cpu_count(),
        "wall_s": round(time.monotonic() - started, 1),
        "method": {
            "partial_lag": "per 'live' dialogue event on the live socket that advances a speaker's end_ms: "
                           "arrival minus the wall time the client sent the audio up to end_ms",
            "caption_delay": "per 100 ms of speech: arrival of the first live-socket dialogue event whose "
                             "end_ms reaches it minus the wall time the client sent it (adds the wait "
                             "between updates)",
            "final_lag": "transcripts topic transcript.final events (one per utterance): Kafka record "
                         "timestamp minus the wall time the client sent the audio up to end_ms",
            "words_settled_lag": "per utterance, the arrival of the first live-socket dialogue event that "
                                 "carries it final minus the wall time the client sent the audio up to its end_ms",
            "dialogue_final_lag": "per dialogue, the arrival of its first 'final' revision on the live socket "
                                  "minus the wall time the client sent the audio up to its end_ms (its last word)",
            "quiet_box_final_lag": "per line of a quiet speaker (--quiet: says a line, then its open stream "
                                   f"carries silence for {GAP_S:.0f} s while the talkers talk), the arrival of the first "
                                   "'final' live-socket event of the speaker's box holding the line minus the wall "
                                   "time the client sent the line's last word (the last sample >= 1% of full "
                                   "scale of the synthesized audio); quiet_words_settled_lag: the same for the "
                                   "first event carrying an utterance of the line final; quiet_box_final_wait: the "
                                   "first minus the second, per line (the merger's part)",
            "leaving_box_final_lag": "the same for --quiet-stop speakers: one line, then the stream ends "
                                     f"{STOP_TAIL_MS} ms after its last word",
            "box_final_wait": "per dialogue, the arrival of its first 'final' revision minus the arrival of the "
                              "first live-socket event that carried its last utterance settled (the merger's "
                              "finality rule alone, without the STT's lag)",
            "order": "per N, a machine probe, the baseline's phase, then Palaver's (the pipeline idles "
                     "meanwhile: other_cpu_percent is the rest of the machine's CPU during the baseline phase); "
                     "steal_percent: CPU the hypervisor gave other guests during the phase (100 = one core)",
            "baseline": "in-process, one decode lane on the worker's lanes x threads, round robin: every >= 1 s of new audio a stream's "
                        f"last {args.baseline_window:.0f} s are re-transcribed; partial lag per hypothesis: produced "
                        "minus the time its last sample was fed; caption delay as for Palaver",
            "offline_wer": "each speaker's whole track through faster-whisper WhisperModel.transcribe (30 s "
                           "windows, conditioned on previous text, temperature fallback), the worker's model "
                           "dir, compute type, threads and beam size, VAD filter off; WER against the same "
                           "script, averaged over the N speakers; wer_vs_offline_points = (streamed - offline) "
                           f"x 100, within when <= {WITHIN_POINTS}",
        },
        "machine_probe": {"before": probe_before, "after": probe_after},
        "offline_reference": offline,
        "palaver": palaver,
        "baseline": baseline,
        "summary": {
            "palaver_max_speakers": pal_n if palaver else None,
            "baseline_max_speakers": base_n if baseline else None,
            "ratio": (round(pal_n / base_n, 2) if base_n else None) if palaver and baseline else None,
            "streamed_within_offline": all(r["within_offline_bound"] for r in palaver) if offline else None,
        },
    }
    png = OUT / "stt.png"
    OUT.mkdir(parents=True, exist_ok=True)
    plot(results, png)
    path = write_results("stt", results)
    print_table(results)
    print(f"wrote {path} and {png} (service logs in {OUT / 'logs'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
