"""Meetings benchmark: M concurrent meetings of K talking speakers each through the whole running pipeline
(``palaver run api ingest store``, ``palaver run stt``, ``palaver run merger`` as processes), each meeting
with its own live-socket watcher.

Every speaker streams a synthesized script at real time (bench/speech.py; meeting m's speaker k reads
the same script as every other meeting's speaker k). The client side is bench/stt.py's (bench/live.py):
lags are against the wall time at which the client had sent the audio an event covers.

- partial lag: per ``live`` dialogue event on a meeting's live socket that advances a speaker's
  ``end_ms``, its arrival minus when the client had sent the audio up to that ``end_ms``;
- words settled: per utterance, the first live-socket event that carries it ``final`` against the audio
  up to its end;
- lost audio: per meeting, acknowledged samples != sent (or a stream closed other than 1000);
- lag over time: per WINDOW seconds of the run (by arrival, from when the meetings began to open: sign-ups
  and invitations, then the streams), p50/p95/p99 of each lag, per meeting and
  overall, so a degradation during the run shows.

Per meeting and overall p50/p95/p99. Prints a table, writes bench/out/meetings.json and meetings.png
(partial and settled p95 per window, one line per meeting and the overall).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import time
from typing import Any

from bench.harness import (
    OUT,
    percentile,
    write_results,
)
from bench.live import (
    FRAME_MS,
    TranscriptsLog,
    advancing_lags_at,
    lag_stats,
    read_live,
    running_pipeline,
    send_stream,
    utterance_settled_lags_at,
)
from bench.speech import SAMPLE_RATE, SendLog, Track, build_tracks
from palaver.demo.accounts import open_meeting

WINDOW_S = 5.0
PERCENTILES = (50, 95, 99)


# --- pure aggregation ---------------------------------------------------------------------------------------


def windowed_percentiles(samples: list[tuple[float, float]], origin: float, window_s: float = WINDOW_S,
                         percentiles: tuple[int, ...] = PERCENTILES) -> list[dict[str, Any]]:  # fmt: skip
    """Samples (arrival wall time, lag) grouped into windows of ``window_s`` from ``origin``: one row per
    window from the first to the last that holds a sample (empty windows between them are kept, with
    ``samples`` 0 and None percentiles, so a stall shows as a gap). Each row: ``t_s`` (window start,
    seconds after ``origin``), ``samples`` and ``p<N>_s`` per percentile. Samples before ``origin`` count in
    the first window."""
    if not samples:
        return []
    buckets: dict[int, list[float]] = {}
    for at, lag in samples:
        buckets.setdefault(max(0, int((at - origin) // window_s)), []).append(lag)
    rows = []
    for index in range(min(buckets), max(buckets) + 1):
        lags = buckets.get(index, [])
        row: dict[str, Any] = {"t_s": round(index * window_s, 3), "samples": len(lags)}
        for p in percentiles:
            row[f"p{p}_s"] = round(percentile(lags, p), 3) if lags else None
        rows.append(row)
    return rows


def overall(per_meeting: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Every meeting's (arrival, lag) samples as one list, in arrival order."""
    return sorted(sample for samples in per_meeting for sample in samples)


def lost_audio(streamed: list[dict[str, Any]]) -> bool:
    """A meeting lost audio when any stream's acknowledged samples differ from those sent, or a stream
    closed other than normally (1000)."""
    return any(s["acked"] != s["sent"] or s["close_code"] != 1000 for s in streamed)


# --- one run ------------------------------------------------------------------------------------------------


async def run_meeting(url: str, index: int, tracks: list[Track], transcripts: TranscriptsLog,
                      drain_timeout_s: float) -> dict[str, Any]:  # fmt: skip
    """One meeting of ``tracks`` with its own live-socket watcher; returns its samples and counts."""
    meeting = await open_meeting(url, [t.speaker_id for t in tracks], f"meetings bench, meeting {index}")
    names = meeting.names()
    live: list[tuple[float, dict[str, Any]]] = []
    stop_live, connected = asyncio.Event(), asyncio.Event()
    live_task = asyncio.create_task(read_live(url, meeting, live, stop_live, connected))
    await asyncio.wait_for(connected.wait(), 30)
    logs = {t.speaker_id: SendLog(SAMPLE_RATE * FRAME_MS // 1000) for t in tracks}
    streamed = await asyncio.gather(*(send_stream(url, meeting.meeting_id, meeting.people[t.speaker_id], t,
                                                  logs[t.speaker_id]) for t in tracks))  # fmt: skip
    deadline = time.monotonic() + drain_timeout_s
    while transcripts.stopped(meeting.meeting_id) != set(names) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    drained = transcripts.stopped(meeting.meeting_id) == set(names)
    settle = time.monotonic() + 15  # the merger finalizes every box once every stream stopped
    while time.monotonic() < settle:
        seen = {e["dialogue_id"] for _, e in live}
        if seen and seen <= {e["dialogue_id"] for _, e in live if e["status"] in ("final", "retracted")}:
            break
        await asyncio.sleep(0.2)
    stop_live.set()
    await live_task
    partials = [(ts, e["speaker_id"], e["end_ms"]) for ts, e in live if e.get("status") == "live"]
    return {"meeting_id": meeting.meeting_id, "partial": advancing_lags_at(partials, logs),
            "settled": utterance_settled_lags_at(live, logs), "streamed": streamed, "drained": drained}  # fmt: skip


async def run(args: argparse.Namespace, tracks: list[Track]) -> dict[str, Any]:
    async with running_pipeline("meetings") as pipeline:
        url, transcripts = pipeline.url, pipeline.transcripts
        # Warm-up (not measured): the worker joins its group and loads the model's caches.
        await run_meeting(url, -1, [Track("warmup", tracks[0].pcm[: 4 * SAMPLE_RATE], "")], transcripts, 120)
        load0, origin = os.getloadavg(), time.time()
        meetings = await asyncio.gather(*(run_meeting(url, m, tracks, transcripts, args.drain_timeout)
                                          for m in range(args.meetings)))  # fmt: skip
        load1 = os.getloadavg()
    return summarize(meetings, origin, args.window) | {"load_average_before": load0, "load_average_after": load1}


def summarize(meetings: list[dict[str, Any]], origin: float, window_s: float) -> dict[str, Any]:
    """Per meeting and overall: stats and per-window percentiles of both lags, lost audio, drained."""
    rows = []
    for m in meetings:
        rows.append({
            "meeting_id": m["meeting_id"],
            "partial_lag": lag_stats([lag for _, lag in m["partial"]]),
            "words_settled_lag": lag_stats([lag for _, lag in m["settled"]]),
            "partial_lag_windows": windowed_percentiles(m["partial"], origin, window_s),
            "words_settled_lag_windows": windowed_percentiles(m["settled"], origin, window_s),
            "sent_samples": sum(s["sent"] for s in m["streamed"]), "acked_samples": sum(s["acked"] for s in m["streamed"]),
            "lost_audio": lost_audio(m["streamed"]), "drained": m["drained"],
        })  # fmt: skip
    partial, settled = overall([m["partial"] for m in meetings]), overall([m["settled"] for m in meetings])
    return {"per_meeting": rows, "overall": {
        "partial_lag": lag_stats([lag for _, lag in partial]),
        "words_settled_lag": lag_stats([lag for _, lag in settled]),
        "partial_lag_windows": windowed_percentiles(partial, origin, window_s),
        "words_settled_lag_windows": windowed_percentiles(settled, origin, window_s),
        "lost_audio": any(r["lost_audio"] for r in rows), "drained": all(r["drained"] for r in rows),
    }}  # fmt: skip


# --- report -------------------------------------------------------------------------------------------------


def print_table(results: dict[str, Any]) -> None:
    def f(stats: dict[str, Any]) -> str:
        return " / ".join("-" if stats[k] is None else f"{stats[k]:.2f}" for k in ("p50_s", "p95_s", "p99_s"))

    print(f"\n{'meeting':<10} {'partial p50/p95/p99 s':>22} {'settled p50/p95/p99 s':>22} {'lost':>5} {'drained':>7}")
    for i, r in enumerate([*results["per_meeting"], results["overall"]]):
        name = "overall" if i == len(results["per_meeting"]) else f"m{i}"
        print(f"{name:<10} {f(r['partial_lag']):>22} {f(r['words_settled_lag']):>22} "
              f"{'yes' if r['lost_audio'] else 'no':>5} {'yes' if r['drained'] else 'no':>7}")  # fmt: skip
    print(f"\noverall p95 per {results['window_s']:.0f} s window (t: seconds after the meetings began to open; their streams follow the sign-ups)")
    for key in ("partial_lag_windows", "words_settled_lag_windows"):
        cells = " ".join(f"{w['t_s']:.0f}:" + ("-" if w["p95_s"] is None else f"{w['p95_s']:.2f}")
                         for w in results["overall"][key])  # fmt: skip
        print(f"  {key.removesuffix('_windows'):<18} {cells}")
    print(f"load average before/after: {results['load_average_before']} / {results['load_average_after']}")


def plot(results: dict[str, Any], path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, key, title in ((axes[0], "partial_lag_windows", "partial lag"),
                           (axes[1], "words_settled_lag_windows", "words settled lag")):  # fmt: skip
        for i, r in enumerate(results["per_meeting"]):
            pts = [(w["t_s"], w["p95_s"]) for w in r[key] if w["p95_s"] is not None]
            ax.plot([t for t, _ in pts], [v for _, v in pts], ".-", alpha=0.6, label=f"meeting {i} p95")
        for p, style in ((95, "k-"), (99, "k:")):
            pts = [(w["t_s"], w[f"p{p}_s"]) for w in results["overall"][key] if w[f"p{p}_s"] is not None]
            ax.plot([t for t, _ in pts], [v for _, v in pts], style, linewidth=2, label=f"overall p{p}")
        ax.set_xlabel(f"seconds after the meetings began to open ({results['window_s']:.0f} s windows)")
        ax.set_title(f"{title}, {results['meetings']} meetings x {results['speakers']} speakers")
        ax.legend(fontsize=8)
    axes[0].set_ylabel("lag (s)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench meetings", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--meetings", type=int, default=2, help="concurrent meetings M (default 2)")
    parser.add_argument("--speakers", type=int, default=3, help="talking speakers K per meeting (default 3)")
    parser.add_argument("--seconds", type=float, default=20, help="seconds of speech per speaker (default 20)")
    parser.add_argument("--window", type=float, default=WINDOW_S,
                        help=f"seconds per window of the lag-over-time figures (default {WINDOW_S:.0f})")  # fmt: skip
    parser.add_argument("--drain-timeout", type=float, default=90.0,
                        help="seconds to wait for a meeting's last finals after its streams end (default 90)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.meetings < 1 or args.speakers < 1 or args.window <= 0:
        parser.error("--meetings and --speakers: positive integers; --window: positive seconds")
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    tracks = build_tracks(args.speakers, args.seconds)
    started = time.monotonic()
    figures = asyncio.run(run(args, tracks))
    results = {"benchmark": "meetings", "meetings": args.meetings, "speakers": args.speakers,
               "speech_s_per_speaker": args.seconds, "window_s": args.window, "cpu_count": os.cpu_count(),
               "wall_s": round(time.monotonic() - started, 1), **figures}  # fmt: skip
    OUT.mkdir(parents=True, exist_ok=True)
    png = OUT / "meetings.png"
    plot(results, png)
    path = write_results("meetings", results)
    print_table(results)
    print(f"wrote {path} and {png} (service logs in {OUT / 'logs'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
