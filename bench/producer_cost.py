"""What producing the ingest's audio frames costs alone, aiokafka beside librdkafka (bench/README.md, ingest).

300 streams x 10 frames a second of 3200-byte PCM with the 12 headers of ``audio.frame/1``
(``ingest.frames.FrameHeaders``), each stream to its own partition of the audio topic (6) on the embedded
broker, every frame's delivery counted as the acker needs it; the CPU of the process (all its threads:
``getrusage``) over a 20 s window after 5 s of warm-up, per frame. Three producers, each in a fresh
process, in turn, on one broker:

- ``aiokafka``: ``ingest.batcher.FrameBatcher`` on the web process's producer (64 KiB batches), as the
  ingest sends frames;
- ``ck``: confluent-kafka's ``Producer`` (librdkafka, idempotent, acks=all, the same linger and batch size),
  one ``produce`` per frame, delivery reports served by ``poll(0)`` on the event loop every 5 ms;
- ``null``: the driver alone (headers built, nothing produced), which the other two include.

confluent-kafka is not a dependency of Palaver; to run the ``ck`` producer, install it apart and put it
on the path for this measurement only::

    pip install --target /tmp/ck confluent-kafka
    PYTHONPATH=.:/tmp/ck python -m bench.producer_cost --rounds 3

Environment: ``LINGER_S`` (default 0.010) for both producers, ``KINDS`` (default aiokafka,ck,null).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

STREAMS = 300
PARTITIONS = 6  # the audio topic's (palaver.events.registry.AUDIO_FRAMES)
FRAME_BYTES = 3200  # 100 ms of 16 kHz PCM16
WARMUP_S = 5.0
WINDOW_S = 20.0
TICK_S = 0.010  # 30 frames a tick: each stream once per 100 ms
DRAIN_S = 30.0

Produce = Callable[[bytes, int, bytes, list[tuple[str, bytes]]], None]


def cpu_s() -> float:
    used = resource.getrusage(resource.RUSAGE_SELF)  # every thread of the process (librdkafka's too)
    return used.ru_utime + used.ru_stime


def linger_s() -> float:
    return float(os.environ.get("LINGER_S", "0.010"))


def streams() -> list[tuple[bytes, int, Any]]:
    from ingest.frames import FrameHeaders
    from palaver.events import AudioFrameV1

    out = []
    for i in range(STREAMS):
        meeting, speaker = f"bench-m{i // 4:04d}", f"u{i % 4}"
        stream = f"{meeting}:{speaker}"
        template = AudioFrameV1(
            meeting, speaker, stream, 16000, 0, 0, b"", language="en", connection="c0ffee"
        )
        out.append((stream.encode(), i % PARTITIONS, FrameHeaders(template)))
    return out


class Delivered:
    count = 0


async def drive(produce: Produce) -> dict[str, Any]:
    """Every 10 ms the next 30 streams' frames; returns the frames sent and the CPU over the window."""
    loop = asyncio.get_running_loop()
    every = streams()
    value = bytes(FRAME_BYTES)
    next_sample = [0] * STREAMS
    per_tick = STREAMS // 10
    start = loop.time()
    tick = sent = in_window = 0
    cpu_start: float | None = None
    while (elapsed := loop.time() - start) < WARMUP_S + WINDOW_S:
        if cpu_start is None and elapsed >= WARMUP_S:
            cpu_start = cpu_s()
        for j in range(per_tick):
            i = (tick * per_tick + j) % STREAMS
            key, partition, headers = every[i]
            produce(key, partition, value, headers.at(next_sample[i]))
            next_sample[i] += FRAME_BYTES // 2
            sent += 1
            in_window += cpu_start is not None
        tick += 1
        await asyncio.sleep(max(0.0, start + tick * TICK_S - loop.time()))
    used = cpu_s() - (cpu_start or 0.0)
    return {"sent": sent, "in_window": in_window, "cpu_s": round(used, 3),
            "us_per_frame": round(used / in_window * 1e6, 1)}  # fmt: skip


async def wait_delivered(delivered: Delivered, sent: int) -> None:
    deadline = time.monotonic() + DRAIN_S
    while delivered.count < sent and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def run_aiokafka(bootstrap: str, topic: str) -> dict[str, Any]:
    from ingest.batcher import BATCH_BYTES, FrameBatcher
    from palaver.settings import Settings
    from palaver.streams.clients import make_producer

    producer = make_producer(Settings(kafka_bootstrap=bootstrap), max_batch_size=BATCH_BYTES)
    await producer.start()
    batcher = FrameBatcher(producer, topic, linger_s=linger_s())
    delivered = Delivered()
    last: dict[bytes, tuple[asyncio.Future[None], list[int]]] = {}

    def produce(key: bytes, partition: int, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        batch = batcher.add(partition, key, value, headers)
        held = last.get(key)
        if held is not None and held[0] is batch:  # as Acker.track: one callback per batch and stream
            held[1][0] += 1
            return
        frames = [1]
        last[key] = (batch, frames)
        batch.add_done_callback(
            lambda _, frames=frames: setattr(delivered, "count", delivered.count + frames[0])
        )

    result = await drive(produce)
    await wait_delivered(delivered, result["sent"])
    await producer.stop()
    return {**result, "delivered": delivered.count}


async def run_ck(bootstrap: str, topic: str) -> dict[str, Any]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": linger_s() * 1000, "batch.size": 64 << 10, "compression.type": "none"})  # fmt: skip
    delivered = Delivered()

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is None:
            delivered.count += 1

    polling = True

    async def poll() -> None:  # delivery reports on the loop's thread, where the acker would need them
        while polling:
            producer.poll(0)
            await asyncio.sleep(TICK_S / 2)

    poller = asyncio.create_task(poll())

    def produce(key: bytes, partition: int, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        producer.produce(topic, value, key, partition=partition, headers=headers, on_delivery=on_delivery)

    result = await drive(produce)
    await wait_delivered(delivered, result["sent"])
    polling = False
    await poller
    producer.flush(10)
    return {**result, "delivered": delivered.count}


async def run_null(bootstrap: str, topic: str) -> dict[str, Any]:
    delivered = Delivered()

    def produce(key: bytes, partition: int, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        delivered.count += 1

    return {**await drive(produce), "delivered": delivered.count}


def child(kind: str, bootstrap: str, topic: str) -> None:
    import uvloop  # the loop uvicorn runs the ingest on

    run = {"aiokafka": run_aiokafka, "ck": run_ck, "null": run_null}[kind]
    print(json.dumps({"kind": kind, "linger_s": linger_s(), **uvloop.run(run(bootstrap, topic))}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.producer_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--rounds", type=int, default=2, help="each producer this many times, in turn")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "BOOTSTRAP", "TOPIC"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(*args.child)
        return 0
    from bench.harness import bench_settings
    from palaver.events.registry import AUDIO_FRAMES, topic_name
    from palaver.streams.clients import ensure_topics

    kinds = os.environ.get("KINDS", "aiokafka,ck,null").split(",")
    with bench_settings("producer") as settings:
        asyncio.run(ensure_topics(settings, [AUDIO_FRAMES]))
        topic = topic_name(settings.topic_namespace, AUDIO_FRAMES.name)
        for n in range(args.rounds):
            for kind in kinds:
                cmd = [
                    sys.executable,
                    "-m",
                    "bench.producer_cost",
                    "--child",
                    kind,
                    settings.bootstrap_servers,
                    topic,
                ]
                done = subprocess.run(cmd, capture_output=True, text=True)
                lines = done.stdout.strip().splitlines()
                print(f"round {n + 1}: {lines[-1] if lines else done.stderr[-2000:]}; load {os.getloadavg()[0]:.2f}",
                      flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
