"""Ingest benchmark: how many microphones one ingest process takes, and what each 100 ms frame costs it.

One ``palaver run ingest`` process (and the embedded broker) takes S streams from load generators in
separate processes (several, so the generator is never the limit). Each stream is a participant of a
meeting (4 per meeting) with its own single-use ticket, signed with the deployment's key as the API would;
it sends the header, then a 100 ms PCM16 frame every 100 ms of wall time (real time, phases spread over
the 100 ms), then ``end``, and waits for the close that says all its audio is durable.

Figures per point, over the steady window (after a warm-up, before the drain):
- frame->ack: from sending a frame to the first ack that covers it (p50/p95/p99);
- frames acked / sent (all of the run's frames; an ack comes only once the broker has the frame);
- ingest CPU per frame: the ingest process's utime+stime (/proc/<pid>/stat) over the window / frames
  sent in it; the same for the generators (their own CPU, all processes together).
Targets: <= 80 us of ingest CPU per frame; 300 streams at frame->ack p99 <= 300 ms, every frame acked.

``--capacity N`` (overload): the ingest process admits N streams (``PALAVER_INGEST_MAX_STREAMS``; without
it, no limit is in the way) and each load level offers its S streams all the same. Per point then also:
streams admitted (got ``ready``) and refused with 1013 (and how long after the socket opened), any other
close, the frames the ingest read (its ``palaver_ingest_frames_total``, which must equal the frames the
admitted streams sent: nothing of a refused stream is read) and what ``/readyz`` answered, once a second,
over the window. The latency figures are the admitted streams' (only they send frames). Done when, at
capacity 100 and 150 offered: 50 refused with 1013, and the 100 admitted keep frame->ack p99 <= 300 ms.

``--code DIR`` runs the ingest process from another checkout (e.g. an older commit, ``git archive``d),
so two versions can be measured back to back on the same noisy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson

from bench.harness import OUT, Progress, bench_settings, percentile, write_results
from palaver import ids
from palaver.ack_log import AckLog, ConnectionLog
from palaver.auth.secret import load_secret
from palaver.auth.tokens import sign
from palaver.settings import Settings

FRAME_MS = 100
SAMPLE_RATE = 16000
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
SPEAKERS_PER_MEETING = 4
TARGET_CPU_US_PER_FRAME = 80.0
TARGET_P99_MS = 300.0
TARGET_STREAMS = 300
CHECKOUT = Path(__file__).resolve().parent.parent


def clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int | str = "self") -> tuple[float, float]:
    """utime and stime of a process in seconds, from /proc/<pid>/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / clock_ticks(), int(fields[12]) / clock_ticks()


def cpu_seconds(pid: int | str = "self") -> float:
    """utime + stime of a process."""
    return sum(cpu_times(pid))


def speech_like_frame(seed: int) -> bytes:
    """100 ms of low-level noise: deflate, where a socket negotiated it, finds little to gain, as on speech."""
    rng = random.Random(seed)
    return b"".join(rng.randint(-600, 600).to_bytes(2, "little", signed=True) for _ in range(FRAME_SAMPLES))


def ticket(secret: bytes, meeting_id: str, user_id: str) -> str:
    claims = {"mtg": meeting_id, "sub": user_id, "use": "ingest", "n": secrets.token_hex(8)}
    return sign(secret, "ticket", claims, now_ms=int(time.time() * 1000), ttl_ms=120_000)


class StreamLoad:
    """One stream's bookkeeping: when each frame was sent, which ones an ack covered and when."""

    def __init__(self, window: tuple[float, float]):
        self.window = window
        self.sent_at: list[float] = []  # by frame index; frame i ends at sample (i + 1) * FRAME_SAMPLES
        self.acked = 0  # frames covered by an ack so far
        self.acks = 0  # ack messages received
        self.latencies_ms: list[float] = []  # frames sent inside the window
        self.closed: int | None = None
        self.close_reason = ""
        self.admitted = False  # got ``ready``
        self.refused_ms: float | None = None  # socket open -> refusal (a close before ``ready``)

    def on_ack(self, samples: int, now: float) -> None:
        self.acks += 1
        covered = min(samples // FRAME_SAMPLES, len(self.sent_at))
        start, end = self.window
        for i in range(self.acked, covered):
            if start <= self.sent_at[i] < end:
                self.latencies_ms.append((now - self.sent_at[i]) * 1000)
        self.acked = max(self.acked, covered)


async def run_stream(url: str, frame: bytes, load: StreamLoad, go_at: float, phase: float, send_s: float,
                     drain_s: float, deflate: bool, logged: ConnectionLog | None = None) -> None:  # fmt: skip
    """One stream; ``logged``: its connection's lines of the ack log (``--client-log``)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    compression = "deflate" if deflate else None  # browsers offer permessage-deflate; the server may accept it
    async with connect(url, max_size=None, open_timeout=60, ping_interval=None, compression=compression) as ws:
        opened = time.time()
        try:
            await ws.send(orjson.dumps({"sample_rate": SAMPLE_RATE, "encoding": "pcm_s16le", "channels": 1}).decode())
            ready = orjson.loads(await ws.recv())
        except ConnectionClosed:  # refused (a full process: 1013) before the header or in reply to it
            load.refused_ms = (time.time() - opened) * 1000
            load.closed, load.close_reason = ws.close_code, ws.close_reason or ""
            return
        assert ready["type"] == "ready", ready
        if logged is not None:
            logged.ready(ready["first_sample"])
        load.admitted = True

        async def read_acks() -> None:
            async for message in ws:
                body = orjson.loads(message)
                if body.get("type") == "ack":
                    load.on_ack(body["samples"], time.time())
                    if logged is not None:
                        logged.ack(body["samples"])

        reader = asyncio.create_task(read_acks())
        await asyncio.sleep(max(0.0, go_at - time.time()))
        start = time.time() + phase
        index = 0
        while True:
            due = start + index * FRAME_MS / 1000
            if due - go_at >= send_s:
                break
            delay = due - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            load.sent_at.append(time.time())
            await ws.send(frame)
            index += 1
        await ws.send('{"type":"end"}')
        try:
            await asyncio.wait_for(reader, drain_s)
        except TimeoutError:
            pass
        load.closed = ws.close_code
        if logged is not None:
            logged.closed(ws.close_code or 1006)


def generator(worker: int, base_url: str, secret: bytes, streams: list[tuple[str, str]], go_at: float,
              warmup_s: float, duration_s: float, drain_s: float, deflate: bool, results: Any,
              client_log: Path | None = None) -> None:  # fmt: skip
    """One load-generator process: its share of the streams; puts its figures on ``results``. ``client_log``:
    the ack log its streams append to (every generator writes whole lines to the one file)."""
    import uvloop

    ack_log = AckLog(client_log) if client_log else None

    async def main() -> dict[str, Any]:
        window = (go_at + warmup_s, go_at + warmup_s + duration_s)
        frame = speech_like_frame(worker)
        loads = [StreamLoad(window) for _ in streams]
        rng = random.Random(worker)
        tasks = [
            asyncio.create_task(run_stream(f"{base_url}/v1/meetings/{m}/stream?ticket={ticket(secret, m, u)}", frame,
                                           load, go_at, rng.random() * FRAME_MS / 1000, warmup_s + duration_s,
                                           drain_s, deflate, ack_log.connection(m, ids.stream_id(m, u)) if ack_log else None))
            for (m, u), load in zip(streams, loads, strict=True)
        ]
        await asyncio.sleep(max(0.0, window[0] - time.time()))
        cpu_start = cpu_seconds()
        await asyncio.sleep(max(0.0, window[1] - time.time()))
        cpu_used = cpu_seconds() - cpu_start
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [repr(o) for o in outcomes if isinstance(o, BaseException)]
        return {
            "latencies_ms": [lat for load in loads for lat in load.latencies_ms],
            "sent": sum(len(load.sent_at) for load in loads),
            "sent_in_window": sum(window[0] <= t < window[1] for load in loads for t in load.sent_at),
            "acked": sum(load.acked for load in loads),
            "acks": sum(load.acks for load in loads),
            "closed_1000": sum(load.closed == 1000 for load in loads),
            "admitted": sum(load.admitted for load in loads),
            "refused_1013": sum(not load.admitted and load.closed == 1013 for load in loads),
            "refused_other": [f"{load.closed} {load.close_reason}" for load in loads
                              if not load.admitted and load.closed not in (None, 1013)][:5],
            "refused_ms": [load.refused_ms for load in loads if load.refused_ms is not None],
            "refusal_reasons": sorted({load.close_reason for load in loads if load.closed == 1013 and not load.admitted}),
            "frames_sent_by_refused": sum(len(load.sent_at) for load in loads if not load.admitted),
            "errors": errors[:5],
            "error_count": len(errors),
            "cpu_s": cpu_used,
        }

    try:
        results.put(uvloop.run(main()))
    finally:
        if ack_log is not None:
            ack_log.close()


PROFILED = """import cProfile, runpy, sys, time
sys.argv = {argv!r}
profile = cProfile.Profile(time.process_time)
profile.enable()
try:
    runpy.run_module("stack", run_name="__main__", alter_sys=True)
finally:
    profile.disable()
    profile.dump_stats({out!r})
"""


def start_ingest(settings: Settings, code: Path, log: Path, profile: Path | None = None,
                 capacity: int | None = None) -> subprocess.Popen[bytes]:  # fmt: skip
    """``palaver run ingest`` alone, from checkout ``code``, on the benchmark's broker and topics, admitting
    ``capacity`` streams (None: no limit); under cProfile, writing ``profile`` when it stops, if given."""
    env = {
        **os.environ,
        "PYTHONPATH": str(code),
        "PALAVER_DATA_DIR": str(settings.data_dir),
        "PALAVER_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "PALAVER_KAFKA_REPLICATION_FACTOR": str(settings.replication_factor),
        "PALAVER_TOPIC_NAMESPACE": settings.topic_namespace,
        "PALAVER_CLICKHOUSE_URL": settings.clickhouse_dsn,
        # Without a capacity the benchmark measures cost, and no admission limit is in the way.
        "PALAVER_INGEST_MAX_STREAMS": str(capacity or 100000),
        "PALAVER_LOG_LEVEL": "WARNING",
    }
    args = ["run", "ingest", "--port", str(settings.api_port)]
    cmd = [sys.executable, "-m", "stack", *args]
    if profile:  # CPU time, not wall time: the machine is shared, and a socket's waits are not its cost
        cmd = [sys.executable, "-c", PROFILED.format(argv=["stack", *args], out=str(profile))]
    return subprocess.Popen(cmd, cwd=code, stdout=open(log, "ab"), stderr=subprocess.STDOUT, env=env)


def wait_for_port(port: int, timeout_s: float = 120) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port}")


COUNTED = {"frames_read": "palaver_ingest_frames_total", "refused": 'palaver_sockets_refused_total{socket="ingest"}'}


def ingest_counts(port: int) -> dict[str, float | None]:
    """The ingest process's own counts (its /metrics): frames it read, streams it refused for capacity."""
    import httpx

    text = httpx.get(f"http://127.0.0.1:{port}/metrics/", timeout=10).text
    values = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    return {name: float(values[metric]) if metric in values else None for name, metric in COUNTED.items()}


def readiness(port: int) -> str:
    """What /readyz answers: ``200``, or ``503 <the ingest check>``; an error's name if it does not answer."""
    import httpx

    try:
        answer = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2)
    except httpx.HTTPError as exc:
        return type(exc).__name__
    return "200" if answer.status_code == 200 else f"{answer.status_code} {answer.json()['checks'].get('ingest')}"


def measure_point(settings: Settings, pid: int, streams: int, args: argparse.Namespace, label: str) -> dict[str, Any]:
    """One load level against the running ingest process ``pid``."""
    counts_before = ingest_counts(settings.api_port) if args.capacity else {}
    secret = load_secret(settings)
    run_id = secrets.token_hex(3)
    pairs = [(f"bench-{run_id}-m{i // SPEAKERS_PER_MEETING:04d}", f"u{i % SPEAKERS_PER_MEETING}") for i in range(streams)]
    workers = max(1, min(args.generators, streams))
    shares = [pairs[w::workers] for w in range(workers)]
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    connect_s = 5 + streams / 50  # time to open every socket before the frames start
    go_at = time.time() + connect_s
    base_url = f"ws://127.0.0.1:{settings.api_port}"
    procs = [
        ctx.Process(target=generator, args=(w, base_url, secret, shares[w], go_at, args.warmup, args.duration,
                                            args.drain, not args.no_deflate, results, args.client_log), daemon=True)
        for w in range(workers)
    ]
    for proc in procs:
        proc.start()
    window = (go_at + args.warmup, go_at + args.warmup + args.duration)
    total = window[1] - time.time()
    progress = Progress(f"{label} {streams} streams", int(total))
    cpu_start: tuple[float, float] | None = None
    readyz: dict[str, int] = {}  # answer -> how often, once a second over the window (with --capacity)
    next_probe = window[0]
    while time.time() < window[1]:
        now = time.time()
        if cpu_start is None and now >= window[0]:
            cpu_start = cpu_times(pid)
        if args.capacity and now >= next_probe:
            answer = readiness(settings.api_port)
            readyz[answer] = readyz.get(answer, 0) + 1
            next_probe += 1.0
        phase = "connecting" if now < go_at else "warm-up" if now < window[0] else "measuring"
        progress.update(int(total - (window[1] - now)), phase)
        time.sleep(min(0.25, max(0.01, (window[0] if cpu_start is None else window[1]) - now)))
    cpu_end = cpu_times(pid)
    user_s, sys_s = (end - start for end, start in zip(cpu_end, cpu_start or cpu_end, strict=True))
    ingest_cpu = user_s + sys_s
    progress.update(int(total), "draining")
    progress.close()
    parts = [results.get(timeout=args.drain + 120) for _ in procs]
    for proc in procs:
        proc.join(timeout=10)
    latencies = [lat for part in parts for lat in part["latencies_ms"]]
    sent = sum(p["sent"] for p in parts)
    in_window = sum(p["sent_in_window"] for p in parts)
    acked = sum(p["acked"] for p in parts)
    gen_cpu = sum(p["cpu_s"] for p in parts)
    point = {
        "label": label,
        "streams": streams,
        "generators": workers,
        "frames_sent": sent,
        "frames_acked": acked,
        "acked_fraction": round(acked / sent, 4) if sent else 0.0,
        "acks_per_frame": round(sum(p["acks"] for p in parts) / sent, 3) if sent else 0.0,
        "streams_closed_1000": sum(p["closed_1000"] for p in parts),
        "errors": sum(p["error_count"] for p in parts),
        "error_examples": [e for p in parts for e in p["errors"]][:5],
        "frames_in_window": in_window,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "ingest_cpu_s": round(ingest_cpu, 3),
        "ingest_cpu_us_per_frame": round(ingest_cpu / in_window * 1e6, 1) if in_window else None,
        "ingest_user_us_per_frame": round(user_s / in_window * 1e6, 1) if in_window else None,
        "ingest_sys_us_per_frame": round(sys_s / in_window * 1e6, 1) if in_window else None,
        "ingest_cores": round(ingest_cpu / args.duration, 3),
        "generator_cpu_us_per_frame": round(gen_cpu / in_window * 1e6, 1) if in_window else None,
        "load_average": os.getloadavg(),
        "_latencies": latencies,
    }
    if args.capacity:
        counts = ingest_counts(settings.api_port)
        refused_ms = [ms for p in parts for ms in p["refused_ms"]]
        # A labelled counter has no sample before its first count; an older checkout (--code) none at all.
        delta = {k: None if counts[k] is None else counts[k] - (counts_before[k] or 0.0) for k in counts}
        point.update({
            "capacity": args.capacity,
            "offered": streams,
            "admitted": sum(p["admitted"] for p in parts),
            "refused_1013": sum(p["refused_1013"] for p in parts),
            "refused_by_ingest_metric": delta["refused"],
            "refused_other": [r for p in parts for r in p["refused_other"]][:5],
            "refusal_reasons": sorted({r for p in parts for r in p["refusal_reasons"]}),
            "refused_ms_p50": round(percentile(refused_ms, 50), 1) if refused_ms else None,
            "refused_ms_p99": round(percentile(refused_ms, 99), 1) if refused_ms else None,
            "frames_sent_by_refused": sum(p["frames_sent_by_refused"] for p in parts),
            "frames_read_by_ingest": delta["frames_read"],
            "readyz_during_window": readyz,
        })  # fmt: skip
        print(f"{label}: capacity {args.capacity}, {streams} offered: {point['admitted']} admitted, "
              f"{point['refused_1013']} refused with 1013 (ingest counted {delta['refused']}; {refused_ms and point['refused_ms_p50']} ms "
              f"p50 after the socket opened), other closes {point['refused_other']}; ingest read {delta['frames_read']} "
              f"frames, the admitted sent {sent}; /readyz over the window {readyz}")  # fmt: skip
    print(f"{label}: {streams} streams: frame->ack p50 {point['p50_ms']} ms, p95 {point['p95_ms']} ms, p99 "
          f"{point['p99_ms']} ms; acked {acked}/{sent}; ingest {point['ingest_cpu_us_per_frame']} us/frame (user "
          f"{point['ingest_user_us_per_frame']}, sys {point['ingest_sys_us_per_frame']}) "
          f"({point['ingest_cores']} cores); {point['acks_per_frame']} acks/frame; generators {point['generator_cpu_us_per_frame']} us/frame; "
          f"errors {point['errors']}; load {point['load_average'][0]:.2f}")  # fmt: skip
    return point


def run_code(code: Path, label: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every load level against one ingest process started from checkout ``code`` (fresh broker and topics)."""
    with bench_settings("ingest") as settings:
        (OUT / "logs").mkdir(parents=True, exist_ok=True)
        log = OUT / "logs" / f"ingest-bench-{label}.log"
        log.unlink(missing_ok=True)
        load_secret(settings)  # made before the ingest starts, so both sides read the same key file
        if args.client_log:
            print(f"{label}: acks go to {args.client_log}; the audio to topics of namespace "
                  f"{settings.topic_namespace} (PALAVER_TOPIC_NAMESPACE for palaver check)")  # fmt: skip
        profile = args.profile.with_suffix(f".{label}.prof") if args.profile else None
        proc = start_ingest(settings, code, log, profile, args.capacity)
        try:
            wait_for_port(settings.api_port)
            return [measure_point(settings, proc.pid, s, args, label) for s in args.streams]
        finally:
            # uvicorn re-raises the signal it stopped on once it has shut down: SIGINT then ends the process
            # with KeyboardInterrupt, through cProfile's writing of the profile, where SIGTERM would not.
            proc.send_signal(signal.SIGINT if profile else signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def checkout(spec: str) -> tuple[str, Path]:
    """``LABEL=DIR`` or ``DIR`` (labelled by its name)."""
    label, _, directory = spec.rpartition("=")
    return label or Path(directory).name, Path(directory)


def plot(points: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for point in points:
        lat = sorted(point["_latencies"])
        if lat:
            right.plot(lat, [i / len(lat) for i in range(len(lat))], label=_series(point))
    right.axvline(TARGET_P99_MS, color="tab:red", linestyle="--", label="p99 target 300 ms")
    right.axhline(0.99, color="tab:gray", linestyle=":")
    right.set_xscale("log")
    right.set_xlabel("frame -> ack (ms)")
    right.set_ylabel("fraction of frames")
    right.set_title("Frame sent -> first ack covering it")
    right.legend(fontsize=8)
    names = [f"{p['label']}\n{p['streams']}" + (f" ({p['admitted']} in)" if "capacity" in p else "") for p in points]
    left.bar(names, [p["ingest_cpu_us_per_frame"] or 0 for p in points], color="tab:blue")
    left.axhline(TARGET_CPU_US_PER_FRAME, color="tab:red", linestyle="--", label="target 80 us")
    left.set_ylabel("ingest CPU per 100 ms frame (us)")
    left.set_title("Ingest process CPU per frame")
    left.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _series(point: dict[str, Any]) -> str:
    if "capacity" not in point:
        return f"{point['label']}, {point['streams']} streams"
    return (f"{point['label']}, {point['admitted']} admitted of {point['offered']} offered (capacity "
            f"{point['capacity']}; {point['refused_1013']} refused with 1013)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="palaver bench ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--streams", type=int, nargs="+", default=[100, 300], help="load levels (default 100 300)")
    parser.add_argument("--duration", type=float, default=20, help="measured seconds per level (default 20)")
    parser.add_argument("--warmup", type=float, default=5, help="seconds of frames before measuring (default 5)")
    parser.add_argument("--drain", type=float, default=20, help="seconds to wait for the last acks (default 20)")
    parser.add_argument("--generators", type=int, default=4, help="load-generator processes (default 4)")
    parser.add_argument("--code", action="append", default=[], metavar="[LABEL=]DIR",
                        help="run the ingest from this checkout; repeat to compare (default: this one)")  # fmt: skip
    parser.add_argument("--no-deflate", action="store_true",
                        help="clients do not offer permessage-deflate (browsers do)")  # fmt: skip
    parser.add_argument("--client-log", type=Path, metavar="FILE",
                        help="append each stream's ready, acks and close to FILE (JSON lines, palaver.ack_log), "
                        "as `palaver check --client-log` reads them")  # fmt: skip
    parser.add_argument("--capacity", type=int, help="overload: the ingest admits this many streams "
                        "(PALAVER_INGEST_MAX_STREAMS) and the load levels offer more; default: no limit")  # fmt: skip
    parser.add_argument("--profile", type=Path, help="run the ingest under cProfile, writing FILE.<label>.prof "
                        "(its figures then include the profiler's cost)")  # fmt: skip
    args = parser.parse_args(argv)
    codes = [checkout(spec) for spec in args.code] or [("this", CHECKOUT)]
    points = [point for label, code in codes for point in run_code(code.resolve(), label, args)]
    OUT.mkdir(parents=True, exist_ok=True)
    png = OUT / "ingest.png"
    plot(points, png)
    for point in points:
        point["frames_measured"] = len(point.pop("_latencies"))
    results = {
        "points": points,
        "frame_ms": FRAME_MS,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "targets": {"ingest_cpu_us_per_frame": TARGET_CPU_US_PER_FRAME, "streams": TARGET_STREAMS,
                    "p99_ms": TARGET_P99_MS, "acked_fraction": 1.0},
        "cpus": os.cpu_count(),
        "capacity": args.capacity,
    }
    path = write_results("ingest", results)
    print(f"wrote {path} and {png}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
