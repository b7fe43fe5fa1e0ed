"""Fixtures for integration tests: the broker and ClickHouse once per session; per module a uuid-named
topic namespace and database, the web process's services in-process, STT and merger as real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from palaver.settings import Settings
from palaver.store import Store
from palaver.store.client import connect_pool
from palaver.store.migrations import apply_migrations
from palaver.streams.clients import ensure_topics
from stack.web import create_app, server_config
from tests.integration.infra import Infra, free_port, infrastructure

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def infra(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Infra]:
    with infrastructure(tmp_path_factory.mktemp("infra")) as found:
        yield found


CLICKHOUSE_CLIENTS = 4  # PALAVER_CLICKHOUSE_CLIENTS' default: tests run calls concurrently, as production


@pytest.fixture(scope="session")
def clickhouse_client(infra: Infra) -> object:
    # chdb allows one data directory per process: every test shares these clients (handles to the one
    # engine), each test module its own database.
    return connect_pool(infra.clickhouse_dsn, CLICKHOUSE_CLIENTS)


# The tests stream at up to 4x real time (the pace is theirs to choose; media time does not depend on it);
# the default limit, 1.5x, would slow their streams to it (tests/integration/test_ingest_limits.py tests it).
TEST_MAX_SPEED = 8.0


def make_settings(infra: Infra, data_dir: Path, namespace: str, database: str) -> Settings:
    return Settings(
        data_dir=data_dir,
        kafka_bootstrap=infra.bootstrap,
        kafka_replication_factor=1,
        clickhouse_url=infra.clickhouse_dsn,
        clickhouse_database=database,
        topic_namespace=namespace,
        api_port=free_port(),
        ingest_max_speed=TEST_MAX_SPEED,
    )


def child_env(settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "PALAVER_DATA_DIR": str(settings.data_dir),
        "PALAVER_KAFKA_BOOTSTRAP": settings.bootstrap_servers,
        "PALAVER_KAFKA_REPLICATION_FACTOR": "1",
        "PALAVER_TOPIC_NAMESPACE": settings.topic_namespace,
    }


class ServiceProcess:
    """A real ``palaver run SERVICE`` process, logging to a file; SIGKILL-able. ``service`` may name several,
    space-separated ("ingest api store": the web process as ``palaver up`` runs it)."""

    def __init__(self, settings: Settings, service: str, log: Path, env: dict[str, str] | None = None):
        self.settings, self.service, self.log = settings, service, log
        self.env = env or {}  # on top of the settings' (the STT engine and its peer)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        out = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stack", "run", *self.service.split()], stdout=out, stderr=subprocess.STDOUT,
            env={**child_env(self.settings), **self.env},
        )  # fmt: skip

    def wait_for_log(self, needle: str, timeout_s: float = 90, count: int = 1) -> None:
        """Until the log holds ``needle`` ``count`` times (a restarted process appends to the same log)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc and self.proc.poll() is None, f"{self.service} died:\n{self.tail()}"
            if self.log.read_text(errors="replace").count(needle) >= count:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{self.service} never logged {needle!r}:\n{self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no flush, no commit."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Pipeline:
    settings: Settings
    store: Store
    url: str
    stt: ServiceProcess
    merger: ServiceProcess
    stt_workers: list[ServiceProcess] = field(default_factory=list)  # stt first; all in one consumer group
    engine: str = "whisper"  # PALAVER_STT_ENGINE of the workers


STT_ENGINES = ("whisper", "deepgram", "openai-realtime")  # for ``indirect`` parametrization of the fixtures
CLOUD_KEYS = {"deepgram": "dg-test-key-3e9b1c5a7d", "openai-realtime": "sk-test-key-8f2a6d4c0b13"}


@pytest.fixture(scope="session")
def peer_asr() -> object:
    from tests.peers.asr import PeerAsr

    return PeerAsr()


@asynccontextmanager
async def engine_env(engine: str, peer_asr: object,
                     peer_languages: frozenset[str] | None = None) -> AsyncIterator[dict[str, str]]:  # fmt: skip
    """The STT workers' environment for ``engine``: a cloud engine talks to its local protocol peer
    (Whisper behind the service's protocol) in this process, with a made-up key. ``peer_languages``: the
    only languages the peer takes (None: any)."""
    if engine == "whisper":
        yield {}
        return
    from tests.peers.deepgram_peer import DeepgramPeer, DeepgramPeerHooks
    from tests.peers.openai_realtime_peer import OpenAIPeerHooks, OpenAIRealtimePeer

    key = CLOUD_KEYS[engine]
    if engine == "deepgram":
        # One interim per second of audio: the peer's Whisper shares two cores with the whole pipeline.
        hooks = DeepgramPeerHooks(interim_every_s=1.0, languages=peer_languages)
        async with DeepgramPeer(peer_asr, key, hooks) as dg:  # type: ignore[arg-type]
            yield {"PALAVER_STT_ENGINE": engine, "PALAVER_DEEPGRAM_URL": dg.url, "PALAVER_DEEPGRAM_API_KEY": key}
    else:
        async with OpenAIRealtimePeer(peer_asr, key, OpenAIPeerHooks(languages=peer_languages)) as oa:  # type: ignore[arg-type]
            yield {"PALAVER_STT_ENGINE": engine, "PALAVER_OPENAI_REALTIME_URL": oa.url, "PALAVER_OPENAI_API_KEY": key}


WEB = frozenset({"ingest", "api", "store"})  # the pipeline's web part: enrichment only where a test wants it


@pytest.fixture(scope="module")
async def pipeline(request: pytest.FixtureRequest, infra: Infra, clickhouse_client: object,
                   tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:  # fmt: skip
    """The whole pipeline on fresh topics and a fresh database: ingest + API + store writer in this process
    (they share the process's ClickHouse connection), STT worker and merger as separate processes. The
    STT engine is whisper unless the test parametrizes the fixture (``indirect``) with another one."""
    async with running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers=1,
                                engine=getattr(request, "param", "whisper"), request=request) as p:  # fmt: skip
        yield p


@pytest.fixture(scope="module")
async def scaled_pipeline(request: pytest.FixtureRequest, infra: Infra, clickhouse_client: object,
                          tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Pipeline]:  # fmt: skip
    """``pipeline`` with three STT worker processes in the one consumer group (``stt_workers``)."""
    async with running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers=3,
                                engine=getattr(request, "param", "whisper"), request=request) as p:  # fmt: skip
        yield p


@asynccontextmanager
async def running_pipeline(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory,
                           stt_workers: int, engine: str = "whisper", request: pytest.FixtureRequest | None = None,
                           peer_languages: frozenset[str] | None = None, web: frozenset[str] = WEB,
                           **overrides: Any) -> AsyncIterator[Pipeline]:  # fmt: skip
    """``web``: the services of the in-process web part; ``overrides`` change settings (whisper only)."""
    if engine == "whisper":
        async with _running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers, {}, web,
                                     overrides) as p:  # fmt: skip
            yield p
        return
    assert request is not None
    async with engine_env(engine, request.getfixturevalue("peer_asr"), peer_languages) as env:
        async with _running_pipeline(infra, clickhouse_client, tmp_path_factory, stt_workers, env) as p:
            p.engine = engine
            yield p
        for worker in p.stt_workers:  # the key is the workers' secret: never in a log line
            assert CLOUD_KEYS[engine] not in worker.log.read_text(errors="replace"), worker.log


@asynccontextmanager
async def _running_pipeline(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory,
                            stt_workers: int, env: dict[str, str], web: frozenset[str] = WEB,
                            overrides: dict[str, Any] | None = None) -> AsyncIterator[Pipeline]:  # fmt: skip
    tag = uuid.uuid4().hex[:10]
    data_dir = tmp_path_factory.mktemp(f"palaver-{tag}")
    settings = make_settings(infra, data_dir, f"t{tag}", f"t_{tag}")
    settings = settings.model_copy(update=overrides) if overrides else settings
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    workers = [ServiceProcess(settings, "stt", data_dir / ("stt.log" if i == 0 else f"stt-{i}.log"), env) for i in range(stt_workers)]
    merger = ServiceProcess(settings, "merger", data_dir / "merger.log")
    for worker in workers:
        worker.start()
    merger.start()
    server = uvicorn.Server(server_config(create_app(settings, set(web), store=store),
                                          "127.0.0.1", settings.api_port, log_level="warning"))  # fmt: skip
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        await _wait_http(url)
        for worker in workers:
            await asyncio.to_thread(worker.wait_for_log, "stt worker (")
        await asyncio.to_thread(merger.wait_for_log, "merger ready")
        yield Pipeline(settings, store, url, workers[0], merger, workers)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
        for worker in workers:
            worker.stop()
        merger.stop()


@dataclass
class Web:
    """The web process's services, in this process, on fresh topics and a fresh database."""

    settings: Settings
    store: Store
    url: str
    app: Any  # the FastAPI app


@asynccontextmanager
async def running_web(infra: Infra, clickhouse_client: object, tmp_path_factory: pytest.TempPathFactory,
                      services: frozenset[str] = frozenset({"api", "store"}), **overrides: Any) -> AsyncIterator[Web]:  # fmt: skip
    """``services`` of the web process (no STT, no merger) served by uvicorn on a free port, on fresh topics
    and a fresh database; ``overrides`` change settings."""
    tag = uuid.uuid4().hex[:10]
    settings = make_settings(infra, tmp_path_factory.mktemp(f"web-{tag}"), f"t{tag}", f"t_{tag}")
    settings = settings.model_copy(update=overrides) if overrides else settings
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    app = create_app(settings, set(services), store=store)
    server = uvicorn.Server(server_config(app, "127.0.0.1", settings.api_port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        await _wait_http(url)
        yield Web(settings, store, url, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)


async def poll(fetch: Any, ready: Any, what: str = "", timeout_s: float = 180) -> Any:
    """Await ``fetch()`` until ``ready`` holds for its value (returned); fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    value = None
    while time.monotonic() < deadline:
        value = await fetch()
        if ready(value):
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}: {value}")


async def _wait_http(url: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    async with httpx.AsyncClient() as http:
        while time.monotonic() < deadline:
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise TimeoutError(f"{url} did not become healthy")
