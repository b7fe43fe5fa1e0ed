"""Composes the HTTP services one process hosts (ingest, api, store writer) into one FastAPI app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import make_asgi_app
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.responses import STORE_RETRY_AFTER_S, STORE_UNAVAILABLE_DETAIL, declared
from palaver import __version__
from palaver.events.registry import AUDIO_FRAMES, CHAT, EDITS, USERS, topic_name
from palaver.metrics import BACKGROUND_RESTARTS
from palaver.settings import Settings
from palaver.store import Store, StoreUnavailable, open_store
from palaver.store.writer import run_store_writer
from palaver.streams.clients import make_producer
from stack.http_errors import http_error

log = logging.getLogger(__name__)

WEB_SERVICES = {"ingest", "api", "store"}


DESCRIPTION = """Live meeting transcription.

* **Ingest**: each participant streams PCM audio over `WS /v1/meetings/{meeting_id}/streams/{speaker_id}`.
* **Read API**: `GET /v1/meetings/{meeting_id}/dialogues` and live dialogue events over
  `WS /v1/meetings/{meeting_id}/live`.
* **Edits, users, chat**: writes become events on Kafka (the system of record); the store writer makes
  them readable a moment later.
"""


class Health(BaseModel):
    status: str  # ok | degraded
    services: list[str]
    checks: dict[str, str]  # check -> "ok" or what fails


async def keep_running(name: str, run: Callable[[asyncio.Event], Awaitable[None]], stop: asyncio.Event,
                       failures: dict[str, str], first_delay_s: float = 1.0, max_delay_s: float = 30.0) -> None:  # fmt: skip
    """Run a background consumer of the web process until ``stop``; when it fails (a bad environment: its
    runner already dead-letters bad messages and retries what is safe), log it loudly, count it, report it
    in ``failures`` (``/healthz``) and start it again after a backoff. The HTTP services go on meanwhile:
    one failing consumer must not stop the process and every socket it holds."""
    delay = first_delay_s
    while not stop.is_set():
        started = time.monotonic()
        try:
            await run(stop)
            return
        except Exception as exc:
            if time.monotonic() - started > max_delay_s:
                delay = first_delay_s  # it ran well for a while: this is a new failure, not a loop
            failures[name] = f"{type(exc).__name__}; restarting"
            BACKGROUND_RESTARTS.labels(task=name).inc()
            log.error("%s failed; starting it again in %.0f s", name, delay, exc_info=exc)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass
        delay = min(delay * 2, max_delay_s)
        failures.pop(name, None)


def create_app(settings: Settings, services: set[str], store: Store | None = None) -> FastAPI:
    """``services`` is a subset of {"ingest", "api", "store"}. ``store`` may be passed in (tests share the
    process's one chdb connection); otherwise it is opened here when a service needs it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []
        stop = asyncio.Event()
        producer = None
        owned_store = None
        if services & {"ingest", "api"}:
            producer = make_producer(settings)
            await producer.start()
            app.state.producer = producer
            app.state.edits_topic = topic_name(settings.topic_namespace, EDITS.name)
            app.state.users_topic = topic_name(settings.topic_namespace, USERS.name)
            app.state.chat_topic = topic_name(settings.topic_namespace, CHAT.name)
        if "ingest" in services:
            from ingest.app import IngestContext

            app.state.ingest = IngestContext(producer, topic_name(settings.topic_namespace, AUDIO_FRAMES.name))
        if services & {"api", "store"}:
            if store is None:
                owned_store = await asyncio.to_thread(open_store, settings)
            app.state.store = store or owned_store
        app.state.background_failures = failures = {}

        def background(name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
            tasks.append(asyncio.create_task(keep_running(name, run, stop, failures), name=name))

        if "store" in services:
            background("store writer", lambda stop: run_store_writer(settings, app.state.store, stop))
        if "api" in services:
            from api.idempotency import KeyedWrites
            from api.live import LiveHub
            from api.users import UserDirectory

            app.state.users = UserDirectory()
            app.state.idempotency = KeyedWrites()
            app.state.live = LiveHub(settings)
            background("live hub", app.state.live.run)
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=10)
                except (TimeoutError, Exception) as exc:
                    log.warning("%s did not stop cleanly: %r", task.get_name(), exc)
            if producer is not None:
                await producer.stop()
            if owned_store is not None:
                owned_store.close()

    app = FastAPI(title="Palaver", version=__version__, description=DESCRIPTION, lifespan=lifespan)
    if "ingest" in services:
        from ingest.app import router as ingest_router

        app.include_router(ingest_router)
    if "api" in services:
        from api.app import router as api_router
        from api.chat import router as chat_router
        from api.edits import router as edits_router
        from api.users import redact_secrets
        from api.users import router as users_router

        for router in (api_router, edits_router, users_router, chat_router):
            app.include_router(router, responses=declared(503))

        @app.exception_handler(RequestValidationError)
        async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
            """FastAPI's 422, minus any password the request carried."""
            return JSONResponse({"detail": jsonable_encoder(redact_secrets(list(exc.errors())))}, status_code=422)

    app.add_exception_handler(HTTPException, http_error)

    @app.exception_handler(StoreUnavailable)
    async def store_unavailable(request: Request, exc: StoreUnavailable) -> JSONResponse:
        """503 while ClickHouse cannot be reached (the store reconnects on a later call): a clear answer to
        retry, not a 500 with a traceback. The message (no secrets in it) goes to the log only."""
        log.warning("%s %s: %s", request.method, request.url.path, exc)
        return JSONResponse({"detail": STORE_UNAVAILABLE_DETAIL}, status_code=503,
                            headers={"Retry-After": str(STORE_RETRY_AFTER_S)})  # fmt: skip

    @app.get("/healthz", tags=["ops"], response_model=Health,
             responses={503: {"model": Health, "description": "A service is down (see `checks`)"}})  # fmt: skip
    async def healthz() -> JSONResponse:
        """200 when this process's services are up; 503 with the failing check otherwise."""
        checks: dict[str, str] = {}
        if getattr(app.state, "store", None) is not None:
            try:
                await app.state.store.aquery("SELECT 1 AS ok")
                checks["clickhouse"] = "ok"
            except Exception as exc:  # report, do not raise: this is a health check
                checks["clickhouse"] = f"error: {exc}"
        for name, failure in getattr(app.state, "background_failures", {}).items():
            checks[name] = failure
        status = 200 if all(v == "ok" for v in checks.values()) else 503
        return JSONResponse({"status": "ok" if status == 200 else "degraded", "services": sorted(services),
                             "checks": checks}, status_code=status)  # fmt: skip

    app.mount("/metrics", make_asgi_app())
    return app
