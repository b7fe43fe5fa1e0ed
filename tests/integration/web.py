"""The web services (api, ingest, store writer) served by uvicorn inside the test process, on fresh topics
and a fresh database: for tests of the HTTP and WebSocket surface that need no STT or merger."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI

from palaver.settings import Settings
from palaver.store import Store
from palaver.store.migrations import apply_migrations
from palaver.streams.clients import ensure_topics
from stack.web import create_app
from tests.integration.conftest import _wait_http, make_settings
from tests.integration.infra import Infra


@dataclass
class Web:
    settings: Settings
    store: Store
    url: str
    app: FastAPI


@asynccontextmanager
async def serve_web(infra: Infra, clickhouse_client: object, data_dir: Path, services: frozenset[str] = frozenset(
        {"api", "ingest", "store"}), **overrides: Any) -> AsyncIterator[Web]:  # fmt: skip
    """``services`` of one web process on namespaced topics and database; ``overrides`` change settings."""
    tag = uuid.uuid4().hex[:10]
    base = make_settings(infra, data_dir, f"t{tag}", f"t_{tag}")
    settings = base.model_copy(update=overrides) if overrides else base
    store = Store(clickhouse_client, settings.clickhouse_database)
    apply_migrations(store)
    await ensure_topics(settings)
    app = create_app(settings, set(services), store=store)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=settings.api_port, log_level="warning"))
    serving = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        await _wait_http(url)
        yield Web(settings, store, url, app)
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=30)
