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
import socket

import uvicorn
import uvloop
from prometheus_client import start_http_server

from palaver.settings import Settings
from palaver.streams.clients import ensure_topics, wait_for_broker
from stack.https import check_tls, uvicorn_tls
from stack.metrics_access import metrics_host
from stack.supervisor import Supervisor, python_child, restart_policy, serve_metrics, stop_on_signals
from stack.web import WEB_SERVICES, create_app, server_config
from stt_workers.streaming import StreamingEngine
from stt_workers.transcriber import Transcriber

log = logging.getLogger(__name__)

SERVICES = ("ingest", "api", "store", "enrichment", "stt", "merger")


class UsageError(ValueError):
    pass


def check_combination(services: list[str]) -> None:
    unknown = [s for s in services if s not in SERVICES]
    if unknown:
        raise UsageError(f"unknown service(s) {', '.join(unknown)}; choose from {', '.join(SERVICES)}")


async def prepare_broker(settings: Settings) -> None:
    await wait_for_broker(settings)
    await ensure_topics(settings)


ENGINE_KEYS = {"whisper": None, "deepgram": "deepgram_api_key", "openai-realtime": "openai_api_key"}


def check_engine(settings: Settings, services: list[str]) -> None:
    """An STT worker needs a known engine, a cloud engine its key (named, never shown), and Whisper a device
    and compute type that run here."""
    if "stt" not in services:
        return
    if settings.stt_engine not in ENGINE_KEYS:
        raise UsageError(f"PALAVER_STT_ENGINE={settings.stt_engine!r}: choose one of {', '.join(ENGINE_KEYS)}")
    key = ENGINE_KEYS[settings.stt_engine]
    if key is not None and getattr(settings, key) is None:
        raise UsageError(f"PALAVER_STT_ENGINE={settings.stt_engine} needs an API key: set PALAVER_{key.upper()}")
    if settings.stt_engine == "whisper":
        from stt_workers.whisper_device import DeviceError, check_device

        try:
            check_device(settings.whisper_device, settings.whisper_compute_type)
        except DeviceError as exc:
            raise UsageError(str(exc)) from None


def run_services(settings: Settings, services: list[str], host: str, port: int, reuse_port: bool = False) -> None:
    """``reuse_port``: bind the HTTP port with SO_REUSEPORT, shared with other processes (``run_workers``);
    /metrics then gets a port of its own (``PALAVER_METRICS_PORT``), as the shared one answers for whichever
    process takes the connection."""
    check_combination(services)
    check_engine(settings, services)
    if set(services) & WEB_SERVICES:
        check_tls(settings)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    asyncio.run(prepare_broker(settings))
    metrics_addr = metrics_host(settings, host)
    if (reuse_port or not set(services) & WEB_SERVICES) and settings.metrics_port and metrics_addr is not None:
        # Web processes serve /metrics themselves; the others, and those sharing a port, get a bare one.
        start_http_server(settings.metrics_port, addr=metrics_addr)
        log.info("metrics on http://%s:%d/metrics", metrics_addr, settings.metrics_port)
    asyncio.run(_run_async(settings, set(services), host, port, reuse_port))


def streaming_engine(settings: Settings) -> StreamingEngine:
    """The cloud engine ``PALAVER_STT_ENGINE`` names, with its key from the settings (``check_engine`` first)."""
    if settings.stt_engine == "deepgram":
        from stt_workers.deepgram_engine import DeepgramEngine

        assert settings.deepgram_api_key is not None
        return DeepgramEngine(settings.deepgram_api_key.get_secret_value(), model=settings.deepgram_model,
                              base_url=settings.deepgram_url)  # fmt: skip
    from stt_workers.openai_realtime_engine import OpenAIRealtimeEngine

    assert settings.stt_engine == "openai-realtime" and settings.openai_api_key is not None
    url = {"base_url": settings.openai_realtime_url} if settings.openai_realtime_url else {}
    return OpenAIRealtimeEngine(settings.openai_api_key.get_secret_value(), model=settings.openai_transcribe_model, **url)


def stt_transcriber(settings: Settings) -> Transcriber:
    """The worker's per-engine part: Silero + batched Whisper locally, or a streaming session per stream."""
    if settings.stt_engine == "whisper":
        from stt_workers.local_transcriber import local_transcriber

        return local_transcriber(settings)
    from stt_workers.cloud_transcriber import CloudTranscriber

    return CloudTranscriber(settings, streaming_engine(settings))


async def _run_async(settings: Settings, services: set[str], host: str, port: int, reuse_port: bool = False) -> None:
    stop = asyncio.Event()
    tasks = []
    if "stt" in services:
        from stt_workers.pipeline import run_stt_worker

        tasks.append(asyncio.create_task(run_stt_worker(settings, stt_transcriber(settings), stop), name="stt"))
    if "merger" in services:
        from merger.app import run_merger

        tasks.append(asyncio.create_task(run_merger(settings, stop), name="merger"))
    web = services & WEB_SERVICES
    if web:
        # log_config=None: uvicorn's records go to the root handlers the entrypoint set up (one format,
        # and the redaction of tickets and tokens in its access lines).
        server = uvicorn.Server(server_config(create_app(settings, web), host, port, log_config=None,
                                              **uvicorn_tls(settings)))  # fmt: skip
        sockets = [shared_port_socket(host, port)] if reuse_port else None
        tasks.append(asyncio.create_task(server.serve(sockets=sockets), name="web"))
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


def run_workers(settings: Settings, services: list[str], workers: int, host: str, port: int) -> int:
    """``palaver run stt --workers N``: N ``palaver run stt`` processes in the one consumer group (the
    group spreads the audio partitions over them). ``palaver run ingest --workers N``: N ``palaver run
    ingest`` processes on one HTTP port, bound with SO_REUSEPORT (the kernel spreads new connections over
    them); they share every meeting's timeline through Kafka (``ingest.timelines``), so any of them serves
    any stream. Supervised like ``palaver up``'s children: one that dies is restarted (the group hands its
    partitions to the others meanwhile; the kernel stops giving it connections); one that keeps dying
    stops all and raises ChildKeepsDying. SIGINT/SIGTERM stops all (returns 0). Process i logs to
    ``<data dir>/logs/<service>-i.log``; with ``PALAVER_METRICS_PORT`` P, it serves /metrics on ``host``:P
    + i and the supervisor on P + N."""
    if services not in (["stt"], ["ingest"]) or workers < 1:
        raise UsageError("--workers N (N >= 1) runs STT workers or ingest processes alone: "
                         "`palaver run stt --workers N`, `palaver run ingest --workers N`")  # fmt: skip
    service = services[0]
    if service == "stt":
        check_engine(settings, services)
    else:
        check_tls(settings)
    stopping = stop_on_signals()
    supervisor = Supervisor(restart_policy(settings))
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    try:
        if settings.metrics_port and (metrics_addr := metrics_host(settings, host)) is not None:
            serve_metrics(settings.metrics_port + workers, metrics_addr)
        for index in range(workers):
            env = {**os.environ, "PALAVER_DATA_DIR": str(settings.data_dir)}
            if settings.metrics_port:  # one Prometheus port per process: the given one and the next ones
                env["PALAVER_METRICS_PORT"] = str(settings.metrics_port + index)
            args = ["-m", "stack", "run", service, "--host", host]
            if service == "ingest":
                args += ["--port", str(port), "--reuse-port"]
                for name, path in (("PALAVER_TLS_CERT_FILE", settings.tls_cert_file),
                                   ("PALAVER_TLS_KEY_FILE", settings.tls_key_file)):  # fmt: skip
                    if path is not None:  # given as --tls-cert/--tls-key: the children get them too
                        env[name] = str(path)
            spec = python_child(f"{service}-{index}", args, env, settings.log_dir / f"{service}-{index}.log")
            log.info("%s: pid %d, log %s", spec.name, supervisor.start(spec).pid, spec.log)
        supervisor.run(stopping)
        return 0
    finally:
        supervisor.stop()


def shared_port_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` with SO_REUSEPORT: every process that binds the port so
    shares it, and the kernel spreads new connections over them (Linux, BSD, macOS)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    return sock
