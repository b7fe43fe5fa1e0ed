"""One code path for chdb (``chdb://dir``) and a ClickHouse server (``http://host:8123``).

chdb runs the ClickHouse engine inside the process and allows one data directory per process, opened by
exactly one process at a time. In embedded mode every stage that touches ClickHouse (the store writer and
the API) therefore runs in one process; ``palaver up`` arranges that.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import clickhouse_connect

from palaver.settings import Settings
from palaver.store.migrations import apply_migrations

log = logging.getLogger(__name__)


class Store:
    """A ClickHouse client bound to one database. Calls are serialized: chdb's in-process engine is shared
    by every thread of the process, and a server client keeps one HTTP session."""

    def __init__(self, client: Any, database: str):
        self._client = client
        self.database = database
        self._lock = threading.Lock()

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._lock:
            return self._client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._lock:
            result = self._client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str) -> None:
        """Insert rows; a retry with the same ``token`` is dropped by ClickHouse's insert deduplication."""
        with self._lock:
            self._client.insert(
                f"{self.database}.{table}",
                rows,
                column_names=list(columns),
                settings={"insert_deduplication_token": token},
            )

    async def acommand(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.command, sql, parameters)

    async def aquery(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.query, sql, parameters)

    async def ainsert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str) -> None:
        await asyncio.to_thread(self.insert, table, rows, columns, token)

    def close(self) -> None:
        with self._lock:
            self._client.close()


def connect(dsn: str) -> Any:
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        raise RuntimeError(
            f"cannot open ClickHouse at {dsn}: {exc}"
            + (
                " (chdb allows one data directory per process and one process per data directory:"
                " is another Palaver process using it?)"
                if dsn.startswith("chdb://")
                else ""
            )
        ) from exc


def open_store(settings: Settings, database: str | None = None, migrate: bool = True) -> Store:
    """Open the configured ClickHouse and (by default) apply pending migrations."""
    store = Store(connect(settings.clickhouse_dsn), database or settings.clickhouse_database)
    if migrate:
        applied = apply_migrations(store)
        if applied:
            log.info("applied migrations %s to %s", applied, store.database)
    return store
