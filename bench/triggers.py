"""Enrichment's consumer: how fast one process takes the dialogues topic, ours against a faust agent.

Enrichment decides when to enrich a meeting from the dialogues topic (each meeting's activity and placed
dialogues: enrichment/progress.py), so it reads every dialogue revision and watermark the merger writes,
the same stream the store writer and the live hub read. A backlog of synthetic meetings (4 speakers,
partials and finals, merged by the real merger code) is put on the dialogues topic; then, one after the
other on the same backlog:

- a do-nothing faust agent (bench/faust_noop.py, batches of 500): the ceiling of any faust-based consumer;
- the enrichment service's own step on the consumer runner (enrichment/service.py), deciding triggers for
  every meeting (no enrichment runs: the thresholds are set out of reach, so this is the consumer's cost).

Both drain in their own consumer group; figures are events per second, and for ours the CPU seconds per
1,000 events. Prints the figures, writes bench/out/triggers.json and .png.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

from bench.harness import OUT, Progress, bench_settings, write_results
from bench.merger import faust_ceiling_on
from bench.synthetic import synthetic_meeting
from enrichment.service import EnrichStep, runner_config
from merger.processor import apply, new_state
from palaver.events import encode
from palaver.events.registry import DIALOGUES, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, make_producer
from palaver.streams.runner import ConsumerRunner

PAUSE_MS = 1500


def dialogue_backlog(meetings: int, utterances: int) -> list[tuple[bytes, bytes]]:
    """(key, value) of every dialogue event the merger makes of the synthetic meetings, interleaved."""
    per_meeting = []
    for i in range(meetings):
        meeting_id = f"bench{i:04d}"
        state, out = new_state(), []
        for event in synthetic_meeting(meeting_id, 4, utterances, seed=i):
            state, updates = apply(meeting_id, state, event, PAUSE_MS)
            out.extend((meeting_id.encode(), encode(u)) for u in updates)
        per_meeting.append(out)
    backlog = []
    while any(per_meeting):
        for queue in per_meeting:
            if queue:
                backlog.append(queue.pop(0))
    return backlog


async def produce(settings: Settings, backlog: list[tuple[bytes, bytes]], progress: Progress) -> None:
    producer = make_producer(settings, linger_ms=5)
    await producer.start()
    topic = topic_name(settings.topic_namespace, DIALOGUES.name)
    try:
        pending = []
        for i, (key, value) in enumerate(backlog):
            pending.append(await producer.send(topic, value, key=key))
            if i % 1000 == 0:
                progress.update(i)
        await asyncio.gather(*pending)
        progress.update(len(backlog))
    finally:
        await producer.stop()


async def drain_with_runner(settings: Settings, events: int) -> dict[str, float]:
    """Our step on the runner, in its own group, until it has handled ``events``: events/s and CPU."""
    producer = make_producer(settings)
    await producer.start()
    step = EnrichStep(settings, store=None, producer=producer)  # type: ignore[arg-type]  # no job ever runs
    stop = asyncio.Event()
    handled = {"n": 0, "t0": 0.0, "cpu0": 0.0}
    process = step.process

    def counted(record: Any) -> None:
        if not handled["n"]:
            handled["t0"], handled["cpu0"] = time.perf_counter(), time.process_time()
        process(record)
        handled["n"] += 1
        if handled["n"] >= events:
            handled["t1"], handled["cpu1"] = time.perf_counter(), time.process_time()
            stop.set()

    step.process = counted  # type: ignore[method-assign]
    try:
        await ConsumerRunner(settings, runner_config(), step, producer).run(stop)
    finally:
        await producer.stop()
    elapsed, cpu = handled["t1"] - handled["t0"], handled["cpu1"] - handled["cpu0"]
    return {"events_per_s": events / elapsed, "cpu_s_per_1000_events": 1000 * cpu / events}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_settings("triggers") as settings:
        settings = settings.model_copy(update={"enrichment_every_dialogues": 10**9, "meeting_idle_s": 10.0**9})
        await ensure_topics(settings)
        backlog = dialogue_backlog(args.meetings, args.utterances)
        await produce(settings, backlog, Progress("backlog", len(backlog)))
        faust = await asyncio.to_thread(faust_ceiling_on, settings, DIALOGUES, len(backlog))
        ours = await drain_with_runner(settings, len(backlog))
    return {"events": len(backlog), "meetings": args.meetings, "faust_noop_events_per_s": faust,
            "runner_events_per_s": ours["events_per_s"], "runner_cpu_s_per_1000_events": ours["cpu_s_per_1000_events"]}  # fmt: skip


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    bars = {"enrichment step\n(runner)": results["runner_events_per_s"],
            "faust agent\n(does nothing)": results["faust_noop_events_per_s"] or 0}  # fmt: skip
    ax.bar(list(bars), list(bars.values()), color=["tab:blue", "tab:orange"])
    ax.set_ylabel("dialogue events / s (one process)")
    ax.set_title(f"Draining {results['events']:,} dialogue events")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench triggers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--meetings", type=int, default=40, help="meetings in the backlog (default 40)")
    parser.add_argument("--utterances", type=int, default=40, help="utterances per speaker (default 40)")
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    OUT.mkdir(parents=True, exist_ok=True)
    plot(results, OUT / "triggers.png")
    write_results("triggers", results)
    faust = results["faust_noop_events_per_s"]
    print(f"dialogue events: {results['events']:,} of {results['meetings']} meetings")
    print(f"enrichment step on the runner: {results['runner_events_per_s']:,.0f} events/s, "
          f"{results['runner_cpu_s_per_1000_events']:.3f} CPU s per 1,000 events")  # fmt: skip
    print(f"faust agent doing nothing:     {faust:,.0f} events/s" if faust else "faust agent: no figure (it failed)")
    print(f"wrote {OUT / 'triggers.json'} and {OUT / 'triggers.png'}")
    return 0
