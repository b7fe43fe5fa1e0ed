"""Merger benchmark: transcript events per second one merger process sustains, and the latency it adds.

Phase 1 (throughput): a backlog of synthetic meetings (4 speakers, partials and finals, overlaps) is put
on the transcripts topic, then one merger process drains it; throughput = input events / time between its
first and last output. Phase 2 (latency): fresh meetings are produced at a fixed rate while the merger
runs; added latency = when the broker appended the output minus when it appended its input (both topics
stamp records on append for the benchmark; the merger copies the input's timestamp into each output's
headers). Targets: >= 5,000 events/s, p95 <= 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import multiprocessing
import time
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from bench.harness import OUT, Progress, bench_settings, percentile, service, wait_for_log, write_results
from bench.synthetic import synthetic_meeting
from palaver.events import encode
from palaver.events.base import EventV
from palaver.events.registry import DIALOGUES, TRANSCRIPTS, TopicSpec, topic_name
from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, make_admin, make_consumer, make_producer

TARGET_EVENTS_PER_S = 5000
TARGET_P95_MS = 50.0
ALL_STOPPED = 2**62


async def stamp_on_append(settings: Settings) -> None:
    """Let the broker stamp the benchmark's transcripts and dialogues records when it appends them
    (``LogAppendTime``), so added latency runs from the input's arrival in the log to the output's: the
    merger's fetch, merge and produce, not the load generator's own sending delays."""
    admin = make_admin(settings)
    await admin.start()
    try:
        # AlterConfigs replaces a topic's whole configuration: restate the registry's settings.
        await admin.alter_configs([
            ConfigResource(ConfigResourceType.TOPIC, topic_name(settings.topic_namespace, spec.name),
                           configs={**spec.kafka_config(), "message.timestamp.type": "LogAppendTime"})
            for spec in (TRANSCRIPTS, DIALOGUES)
        ])  # fmt: skip
    finally:
        await admin.close()


def meetings(prefix: str, count: int, utterances: int) -> list[tuple[str, list[EventV]]]:
    return [
        (f"{prefix}{i:04d}", synthetic_meeting(f"{prefix}{i:04d}", 4, utterances, seed=i))
        for i in range(count)
    ]


def interleave(batch: list[tuple[str, list[EventV]]]) -> list[tuple[str, EventV]]:
    """Round-robin across meetings, each meeting's events in order (as live meetings would arrive)."""
    out, queues = [], [list(events) for _, events in batch]
    ids_ = [m for m, _ in batch]
    while any(queues):
        for meeting_id, queue in zip(ids_, queues, strict=True):
            if queue:
                out.append((meeting_id, queue.pop(0)))
    return out


async def produce(
    settings: Settings, events: list[tuple[str, EventV]], rate: float | None, progress: Progress
) -> float:
    """Produce events (at ``rate`` per second when given); returns the achieved rate."""
    producer = make_producer(settings, linger_ms=2)
    await producer.start()
    topic = topic_name(settings.topic_namespace, TRANSCRIPTS.name)
    # Encoded before the clock starts: the load generator's own work competes with the merger for CPU.
    messages = [(meeting_id.encode(), encode(event)) for meeting_id, event in events]
    started = time.perf_counter()
    try:
        pending = []
        for i, (key, value) in enumerate(messages):
            pending.append(await producer.send(topic, value, key=key))
            if rate is not None and i % 50 == 0:
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
            if i % 500 == 0:
                progress.update(i)
        await asyncio.gather(*pending)
        progress.update(len(events))
    finally:
        await producer.stop()
    return len(events) / (time.perf_counter() - started)


def produce_in_process(
    settings: Settings, prefix: str, count: int, utterances: int, rate: float
) -> tuple[float, int]:
    """Produce fresh meetings at ``rate``; returns the achieved rate and the number of events."""
    events = interleave(meetings(prefix, count, utterances))
    return asyncio.run(produce(settings, events, rate, Progress("", len(events), quiet=True))), len(events)


async def collect(
    settings: Settings,
    meeting_ids: set[str],
    progress: Progress,
    timeout_s: float,
    load: asyncio.Future[Any] | None = None,
) -> list[dict[str, Any]]:
    """Read dialogue-topic output until every meeting's final watermark (all streams stopped) arrived.
    It first waits, without reading, until ``load`` (the input's producer, if any) is done and the topic
    stops growing, so the benchmark's own reading does not take CPU from the merger it measures. Reading
    later changes no figure: each output's latency comes from the timestamps it carries."""
    consumer = make_consumer(settings, None, topic_name(settings.topic_namespace, DIALOGUES.name))
    await consumer.start()
    outputs: list[dict[str, Any]] = []
    done: set[str] = set()
    deadline = time.monotonic() + timeout_s
    try:
        await _wait_until_quiet(consumer, progress, deadline, load)
        while done != meeting_ids and time.monotonic() < deadline:
            batches = await consumer.getmany(timeout_ms=500, max_records=5000)
            for records in batches.values():
                for r in records:
                    event = orjson.loads(r.value)
                    if event["meeting_id"] not in meeting_ids:
                        continue
                    source_ts = int(dict(r.headers or ()).get("palaver.source_ts_ms", b"0"))
                    outputs.append({"ts": r.timestamp, "source_ts": source_ts})
                    if event["event"] == "meeting.watermark" and event["watermark_ms"] == ALL_STOPPED:
                        done.add(event["meeting_id"])
    finally:
        await consumer.stop()
    if done != meeting_ids:
        raise TimeoutError(f"{len(meeting_ids - done)} meetings never completed")
    return outputs


async def _wait_until_quiet(
    consumer: AIOKafkaConsumer, progress: Progress, deadline: float, load: asyncio.Future[Any] | None
) -> None:
    partitions = [
        TopicPartition(t, p) for t in consumer.subscription() for p in consumer.partitions_for_topic(t) or ()
    ]
    before = sum((await consumer.end_offsets(partitions)).values())  # earlier phases' outputs
    last, stable_since = -1, time.monotonic()
    while time.monotonic() < deadline:
        total = sum((await consumer.end_offsets(partitions)).values()) - before
        progress.update(min(total, progress.total), "dialogue events out")
        if total != last:
            last, stable_since = total, time.monotonic()
        elif (total or before) and time.monotonic() - stable_since > 3 and (load is None or load.done()):
            return
        await asyncio.sleep(0.5)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with bench_settings("merger") as settings:
        await ensure_topics(settings)
        await stamp_on_append(settings)
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        log = OUT / "logs" / "merger.log"
        log.unlink(missing_ok=True)
        backlog = interleave(meetings("tp", args.meetings, args.utterances))
        progress = Progress("producing backlog   ", len(backlog))
        await produce(settings, backlog, None, progress)
        progress.close()

        ceiling = faust_ceiling(settings, len(backlog))
        merger = service(settings, "merger", log=log)
        try:
            wait_for_log(log, "merger ready")
            progress = Progress("merger draining     ", int(len(backlog) * 1.45))
            outputs = await collect(settings, {m for m, _ in meetings("tp", args.meetings, 0)}, progress, 600)
            progress.close()
            span_s = (max(o["ts"] for o in outputs) - min(o["ts"] for o in outputs)) / 1000
            throughput = len(backlog) / span_s

            latency: dict[str, Any] = {}
            for label, rate in (("target_rate", args.rate), ("sustained_rate", args.sustained_rate)):
                prefix = f"l{label[0]}"
                wanted = {m for m, _ in meetings(prefix, args.latency_meetings, 0)}
                progress = Progress(
                    f"live at {rate}/s     ",
                    int(args.latency_meetings * 4 * (args.utterances * 3 + 2) * 1.45),
                )
                # The load comes from a process of its own, so that its producer's sending is not delayed
                # by this process reading the outputs (a delay the merger would be charged for).
                with concurrent.futures.ProcessPoolExecutor(
                    1, mp_context=multiprocessing.get_context("spawn")
                ) as pool:
                    produced = asyncio.get_running_loop().run_in_executor(
                        pool,
                        produce_in_process,
                        settings,
                        prefix,
                        args.latency_meetings,
                        args.utterances,
                        rate,
                    )
                    live_outputs = await collect(settings, wanted, progress, 600, load=produced)
                    achieved, produced_events = await produced
                progress.close()
                latencies = [o["ts"] - o["source_ts"] for o in live_outputs if o["source_ts"]]
                latency[label] = {"input_rate": rate, "achieved_rate": round(achieved, 1), "events": produced_events,
                                  "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
                                  "p99_ms": percentile(latencies, 99), "_latencies": latencies}  # fmt: skip
        finally:
            merger.terminate()
            merger.wait(timeout=30)
    at_target = latency["target_rate"]
    return {
        "benchmark": "merger",
        "backlog_events": len(backlog),
        "outputs": len(outputs),
        "throughput_events_per_s": round(throughput, 1),
        "throughput_target": TARGET_EVENTS_PER_S,
        "faust_noop_ceiling_events_per_s": ceiling,
        "throughput_vs_ceiling": round(throughput / ceiling, 3) if ceiling else None,
        "added_latency": latency,
        "p95_target_ms": TARGET_P95_MS,
        "meets_targets": throughput >= TARGET_EVENTS_PER_S and at_target["p95_ms"] <= TARGET_P95_MS,
    }


def faust_ceiling(settings: Settings, events: int) -> float | None:
    """Events/s of a do-nothing faust agent over the same backlog, in its own consumer group."""
    return faust_ceiling_on(settings, TRANSCRIPTS, events)


def faust_ceiling_on(settings: Settings, spec: TopicSpec, events: int) -> float | None:
    """Events/s of a do-nothing faust agent draining ``events`` of the topic, in its own consumer group."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.faust_noop", "--bootstrap", settings.bootstrap_servers,
         "--topic", topic_name(settings.topic_namespace, spec.name), "--events", str(events),
         "--app-id", f"{settings.topic_namespace}.noop", "--data-dir", str(Path(settings.data_dir) / "noop")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    rate = None
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("RATE") or " RATE " in line:
                rate = float(line.split("RATE")[1].split()[0])
                break
    finally:
        proc.kill()
        proc.wait()
    return rate


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    bars = {"merger": results["throughput_events_per_s"], "faust no-op": results["faust_noop_ceiling_events_per_s"] or 0,
            "target": results["throughput_target"]}  # fmt: skip
    left.bar(list(bars), list(bars.values()), color=["tab:blue", "tab:orange", "tab:gray"])
    left.set_ylabel("transcript events / s (one process)")
    left.set_title("Merger throughput (backlog drain)")
    for phase in results["added_latency"].values():
        lat = sorted(phase["_latencies"])
        right.plot(
            lat, [i / len(lat) for i in range(len(lat))], label=f"{phase['achieved_rate']:.0f} events/s"
        )
    right.axvline(results["p95_target_ms"], color="tab:red", linestyle="--", label="p95 target 50 ms")
    right.axhline(0.95, color="tab:gray", linestyle=":")
    right.set_xscale("log")
    right.set_xlabel("added latency (ms)")
    right.set_ylabel("fraction of dialogue events")
    right.set_title("Added latency (input appended -> dialogue event appended)")
    right.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench merger", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--meetings", type=int, default=40, help="meetings in the backlog (default 40)")
    parser.add_argument("--utterances", type=int, default=40, help="utterances per speaker (default 40)")
    parser.add_argument("--latency-meetings", type=int, default=20, help="meetings in the latency phase")
    parser.add_argument(
        "--rate", type=int, default=TARGET_EVENTS_PER_S, help="input rate of the first latency phase"
    )
    parser.add_argument(
        "--sustained-rate", type=int, default=1000, help="input rate of the second latency phase"
    )
    args = parser.parse_args(argv)
    results = asyncio.run(run(args))
    png = OUT / "merger.png"
    OUT.mkdir(parents=True, exist_ok=True)
    plot(results, png)
    for phase in results["added_latency"].values():
        phase["samples"] = len(phase.pop("_latencies"))
    path = write_results("merger", results)
    print(f"merger throughput: {results['throughput_events_per_s']:.0f} events/s over {results['backlog_events']} "
          f"events (target {TARGET_EVENTS_PER_S}); a no-op faust agent: {results['faust_noop_ceiling_events_per_s']} "
          f"events/s on this machine")  # fmt: skip
    for phase in results["added_latency"].values():
        print(f"added latency at {phase['achieved_rate']:.0f} events/s: p50 {phase['p50_ms']} ms, "
              f"p95 {phase['p95_ms']} ms, p99 {phase['p99_ms']} ms (target p95 <= {TARGET_P95_MS:.0f} ms)")  # fmt: skip
    print(f"meets targets: {results['meets_targets']}; wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
