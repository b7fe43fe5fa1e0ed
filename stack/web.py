"""Composes the HTTP services one process hosts (ingest, api, store writer) into one FastAPI app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException

from api.responses import STORE_RETRY_AFTER_S, STORE_UNAVAILABLE_DETAIL, declared
from palaver import __version__
from palaver.admission import Capacity
from palaver.auth.secret import load_secret
from palaver.auth.tickets import UsedTickets
from palaver.events.registry import AUDIO_FRAMES, CHAT, EDITS, MEETINGS, SESSIONS, USERS, topic_name
from palaver.metrics import BACKGROUND_RESTARTS
from palaver.settings import Settings
from palaver.store import Store, StoreUnavailable, open_store
from palaver.store.client import scrub
from palaver.store.writer import run_store_writer
from palaver.streams.clients import make_producer
from stack import security_headers
from stack.api_docs import add_docs
from stack.body_limit import BodySizeLimit
from stack.http_errors import http_error
from stack.metrics_access import metrics_app

log = logging.getLogger(__name__)

# Enrichment reads the store (a meeting's text when it enriches it): with the embedded chdb, only the process
# that owns the data dir can, so it runs beside the store writer.
WEB_SERVICES = {"ingest", "api", "store", "enrichment"}

CLICKHOUSE_DOWN = "unavailable"  # /healthz's clickhouse check when it does not answer (details in the log)

DESCRIPTION = """Live meeting transcription.

* **Accounts**: register (`POST /v1/users`), sign in (`POST /v1/auth/token`, OAuth2 password flow; or
  `POST /v1/auth/login` for a browser session in cookies); every other route needs the caller signed in.
* **Meetings**: `POST /v1/meetings`, invite participants or share a link; only a meeting's people see it.
* **Ingest**: each participant streams PCM audio over `WS /v1/meetings/{meeting_id}/stream?ticket=...` with a
  single-use ticket (`POST /v1/meetings/{meeting_id}/ingest-tickets`); the speaker is the ticket's user.
* **Read API**: `GET /v1/meetings/{meeting_id}/dialogues`; live dialogues, chat and participant changes
  over `WS /v1/meetings/{meeting_id}/live` (typed JSON messages; see the README); a transcript to download
  (Markdown, JSON, SRT, WebVTT) from `GET /v1/meetings/{meeting_id}/export`; `GET /v1/search` over the
  caller's meetings.
* **Edits, users, chat**: writes become events on Kafka (the system of record); the store writer makes
  them readable a moment later.
"""


class Readiness(BaseModel):
    status: str  # ready | full
    checks: dict[str, str]  # socket kind (ingest, live) -> "ok" or "full: N of N ..."


def _capacities(app: FastAPI) -> dict[str, Capacity]:
    """The admission capacities of the services this process hosts (those started: none before the lifespan)."""
    found = {}
    if (ingest := getattr(app.state, "ingest", None)) is not None:
        found["ingest"] = ingest.active.capacity
    if (live := getattr(app.state, "live", None)) is not None:
        found["live"] = live.capacity
    return found


def server_config(app: FastAPI, host: str, port: int, log_level: str = "info", **options: Any) -> uvicorn.Config:
    """How uvicorn serves the web process: WebSocket messages bounded by the largest legal ingest message
    (uvicorn's default is 16 MiB; a larger message closes its socket with 1009), pings every 20 s, and no
    permessage-deflate: browsers always offer it, and PCM does not compress, so it cost the ingest about
    20 µs of CPU a frame for nothing (`palaver bench ingest --no-deflate`; the live socket's messages are
    small). ``options``: more of uvicorn's (TLS files, ``log_config``)."""
    from ingest.protocol import MAX_MESSAGE_BYTES

    return uvicorn.Config(app, host=host, port=port, log_level=log_level, ws_ping_interval=20,
                          ws_max_size=MAX_MESSAGE_BYTES, ws_per_message_deflate=False, **options)  # fmt: skip


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
    """``services`` is a subset of {"ingest", "api", "store", "enrichment"}. ``store`` may be passed in (tests share the
    process's one chdb connection); otherwise it is opened here when a service needs it."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []
        stop = asyncio.Event()
        producer = None
        owned_store = None
        if services & {"ingest", "api"}:
            from ingest.batcher import BATCH_BYTES

            # Larger batches than aiokafka's 16 KiB for the audio frames (ingest/batcher.py); the API's few
            # events are unaffected (a batch takes only what is there).
            batch_size = {"max_batch_size": BATCH_BYTES} if "ingest" in services else {}
            producer = make_producer(settings, **batch_size)
            await producer.start()
            app.state.producer = producer
            app.state.edits_topic = topic_name(settings.topic_namespace, EDITS.name)
            app.state.users_topic = topic_name(settings.topic_namespace, USERS.name)
            app.state.chat_topic = topic_name(settings.topic_namespace, CHAT.name)
            app.state.meetings_topic = topic_name(settings.topic_namespace, MEETINGS.name)
            app.state.sessions_topic = topic_name(settings.topic_namespace, SESSIONS.name)
        app.state.settings = settings
        app.state.secret = load_secret(settings)
        # Called with a meeting's id when the API ends it: this process's ingest drops its timeline.
        app.state.meeting_ended = []
        if "ingest" in services:
            from ingest.app import IngestContext
            from ingest.limits import IngestLimits
            from ingest.timeline_log import TimelineLog

            timelines = TimelineLog(settings, producer)  # type: ignore[arg-type]
            await timelines.start()
            app.state.ingest = IngestContext(producer, topic_name(settings.topic_namespace, AUDIO_FRAMES.name),
                                             app.state.secret, timelines, IngestLimits.from_settings(settings))  # fmt: skip
            app.state.meeting_ended.append(app.state.ingest.forget)
        if services & {"api", "store", "enrichment"}:
            if store is None:
                owned_store = await asyncio.to_thread(open_store, settings)
            app.state.store = store or owned_store
        app.state.background_failures = failures = {}

        def background(name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
            tasks.append(asyncio.create_task(keep_running(name, run, stop, failures), name=name))

        if "store" in services:
            background("store writer", lambda stop: run_store_writer(settings, app.state.store, stop))
        if "enrichment" in services:
            from enrichment.service import run_enrichment

            background("enrichment", lambda stop: run_enrichment(settings, app.state.store, stop))
            if settings.webhook_urls:  # the operator's URLs: each meeting's final result is sent to them
                from enrichment.webhooks import run_webhooks

                background("webhooks", lambda stop: run_webhooks(settings, stop))
        if "api" in services:
            from api.access import MeetingDirectory
            from api.auth import Limits
            from api.idempotency import KeyedWrites
            from api.identity import Sessions
            from api.live import LiveHub
            from api.users import UserDirectory

            app.state.users = UserDirectory()
            app.state.meetings = MeetingDirectory()
            app.state.sessions = Sessions()
            app.state.used_tickets = UsedTickets()
            app.state.signin_limits = Limits(settings.signin_max_failures, settings.signin_window_s)
            app.state.idempotency = KeyedWrites()
            app.state.live = LiveHub(settings)
            background("live hub", app.state.live.run)
            from api.name_claims import NameClaims
            from api.name_registry import run_name_registry
            from api.registration import RegistrationDesk

            app.state.registration = RegistrationDesk(settings)
            app.state.names = NameClaims(settings, producer)  # type: ignore[arg-type]
            background("name decisions", app.state.names.run)
            background("name registry", lambda stop: run_name_registry(settings, stop))
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                try:
                    await asyncio.wait_for(task, timeout=10)
                except (TimeoutError, Exception) as exc:
                    log.warning("%s did not stop cleanly: %r", task.get_name(), exc)
            if "ingest" in services:
                await app.state.ingest.timelines.stop()
            if producer is not None:
                await producer.stop()
            if owned_store is not None:
                owned_store.close()

    # FastAPI's own docs pages load from a CDN and start with an inline script: stack.api_docs serves ours.
    app = FastAPI(title="Palaver", version=__version__, description=DESCRIPTION, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json" if settings.docs else None)  # fmt: skip
    security_headers.install(app, settings.picture_origins)
    if settings.docs:
        add_docs(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_request_bytes)
    if "ingest" in services:
        from ingest.app import router as ingest_router

        app.include_router(ingest_router)
    if "api" in services:
        from api.app import router as api_router
        from api.auth import router as auth_router
        from api.autocorrect import router as autocorrect_router
        from api.chat import router as chat_router
        from api.edits import router as edits_router
        from api.exports import router as exports_router
        from api.insights import router as insights_router
        from api.meetings import router as meetings_router
        from api.runs import router as runs_router
        from api.search import router as search_router
        from api.users import redact_secrets
        from api.users import router as users_router
        from api.webapp import router as webapp_router

        for router in (auth_router, meetings_router, api_router, edits_router, users_router, chat_router,
                       exports_router, search_router, runs_router, autocorrect_router,
                       insights_router):
            app.include_router(router, responses=declared(503))
        app.include_router(webapp_router)

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
                # A fixed answer: an exception's text may name hosts, users or worse. The log gets it, scrubbed.
                log.warning("/healthz: ClickHouse does not answer: %s: %s", type(exc).__name__,
                            scrub(str(exc), settings.clickhouse_dsn))  # fmt: skip
                checks["clickhouse"] = CLICKHOUSE_DOWN
        for name, failure in getattr(app.state, "background_failures", {}).items():
            checks[name] = failure
        status = 200 if all(v == "ok" for v in checks.values()) else 503
        return JSONResponse({"status": "ok" if status == 200 else "degraded", "services": sorted(services),
                             "checks": checks}, status_code=status)  # fmt: skip

    @app.get("/readyz", tags=["ops"], response_model=Readiness,
             responses={503: {"model": Readiness, "description": "Full: new sockets are refused (see `checks`)"}})  # fmt: skip
    async def readyz(
        socket: Annotated[Literal["ingest", "live"] | None, Query(description="Ask about one kind of socket only")] = None,
    ) -> JSONResponse:
        """Whether this process takes new sockets: 200 while it does, 503 with `Retry-After` while it holds
        its most ingest streams (`PALAVER_INGEST_MAX_STREAMS`) or live sockets (`PALAVER_LIVE_MAX_SOCKETS`),
        which it then refuses with 1013. For a load balancer: send new sockets elsewhere meanwhile; the ones
        this process holds keep being served. Says nothing of the broker or the store (`/healthz` does)."""
        capacities = {name: capacity for name, capacity in _capacities(app).items() if socket in (None, name)}
        checks = {name: capacity.readiness() for name, capacity in capacities.items()}
        full = [capacity for capacity in capacities.values() if capacity.full]
        body = {"status": "full" if full else "ready", "checks": checks}
        if not full:
            return JSONResponse(body)
        retry = max(capacity.retry_after_s for capacity in full)
        return JSONResponse(body, status_code=503, headers={"Retry-After": str(retry)})

    metrics = metrics_app(settings)
    if metrics is not None:
        app.mount("/metrics", metrics)
    return app
