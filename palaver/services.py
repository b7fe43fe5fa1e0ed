"""Runs one or several services in this process: ``palaver run api ingest store``, ``palaver run stt``.

The same code path serves ``palaver up`` (which starts one such process per group) and a deployment that
runs each service alone. Every service runs on uvloop, whose cheaper callbacks and sockets matter to the
high-rate consumers (the merger gained about 12% per process).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time

import uvicorn
import uvloop
from prometheus_client import start_http_server

from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, wait_for_broker
from palaver.web import WEB_SERVICES, create_app
from stt_workers.engine import SttEngine

log = logging.getLogger(__name__)

SERVICES = ("ingest", "api", "store", "stt", "merger")


class UsageError(ValueError):
    pass


def check_combination(services: list[str]) -> None:
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise UsageError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")


async def prepare_broker(settings: Settings) -> None:
    await wait_for_broker(settings)
    await ensure_topics(settings)


def check_engine(settings: Settings, services: list[str]) -> None:
    if "stt" in services and settings.stt_engine != "whisper":
        raise UsageError(
            f"PALAVER_STT_ENGINE={settings.stt_engine!r}: only the whisper engine runs in the worker so far "
            "(the deepgram and openai-realtime engines are built and tested, not yet wired in)"
        )


def run_services(settings: Settings, services: list[str], host: str, port: int) -> None:
    check_combination(services)
    check_engine(settings, services)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(prepare_broker(settings))
    if not set(services) & WEB_SERVICES and settings.metrics_port:
        # Web processes serve /metrics themselves; the others get a bare Prometheus endpoint.
        start_http_server(settings.metrics_port, addr=host)
        log.info("metrics on http://%s:%d/metrics", host, settings.metrics_port)
    asyncio.run(_run_async(settings, set(services), host, port))


def whisper_engine(settings: Settings) -> SttEngine:
    """Greedy decoding (beam 1, the default) batches open utterances across streams; a wider beam decodes
    one utterance at a time with faster-whisper."""
    common = {"compute_type": settings.whisper_compute_type, "device": settings.whisper_device,
              "threads": settings.whisper_threads}  # fmt: skip
    if settings.whisper_beam_size == 1:
        from stt_workers.batched_whisper import BatchedWhisper

        return BatchedWhisper(settings.model_dir, **common)  # type: ignore[arg-type]
    from stt_workers.whisper_engine import WhisperEngine

    return WhisperEngine(settings.model_dir, beam_size=settings.whisper_beam_size, **common)  # type: ignore[arg-type]


async def _run_async(settings: Settings, services: set[str], host: str, port: int) -> None:
    stop = asyncio.Event()
    tasks = []
    if "stt" in services:
        from stt_workers.pipeline import SttWorker
        from stt_workers.vad import SileroScorer

        worker = SttWorker(settings, whisper_engine(settings), SileroScorer())
        tasks.append(asyncio.create_task(worker.run(stop), name="stt"))
    if "merger" in services:
        from merger.app import Merger

        tasks.append(asyncio.create_task(Merger(settings).run(stop), name="merger"))
    web = services & WEB_SERVICES
    if web:
        config = uvicorn.Config(create_app(settings, web), host=host, port=port, log_level="info", ws_ping_interval=20)
        server = uvicorn.Server(config)
        tasks.append(asyncio.create_task(server.serve(), name="web"))
    else:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
    done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    # The web server returns on SIGINT/SIGTERM (uvicorn handles them); any task ending ends the process.
    stop.set()
    if web:
        server.should_exit = True
    await asyncio.wait(tasks, timeout=15)
    for task in done:
        if not task.cancelled() and task.exception():
            raise task.exception()  # type: ignore[misc]


def run_stt_workers(settings: Settings, services: list[str], workers: int) -> int:
    """``palaver run stt --workers N``: N ``palaver run stt`` processes in the one consumer group (the
    group spreads the audio partitions over them). A child that dies is reported and the others go on
    (the group hands its partitions to them); SIGINT/SIGTERM stops all. Returns 1 when none is left."""
    if services != ["stt"] or workers < 1:
        raise UsageError("--workers N (N >= 1) runs STT workers only: `palaver run stt --workers N`")
    children: dict[int, subprocess.Popen[bytes]] = {}
    for index in range(workers):
        env = {**os.environ, "PALAVER_DATA_DIR": str(settings.data_dir)}
        if settings.metrics_port:  # one Prometheus port per worker: the given one and the next ones
            env["PALAVER_METRICS_PORT"] = str(settings.metrics_port + index)
        proc = subprocess.Popen([sys.executable, "-m", "palaver", "run", "stt"], env=env, stdin=subprocess.DEVNULL)
        children[index] = proc
        log.info("stt worker %d: pid %d", index, proc.pid)
    stopping = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while not stopping and children:
            for index, proc in list(children.items()):
                code = proc.poll()
                if code is not None:
                    del children[index]
                    log.error("stt worker %d (pid %d) exited with code %d; %d left", index, proc.pid, code, len(children))
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for proc in children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in children.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
