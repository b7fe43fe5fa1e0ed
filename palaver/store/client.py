"""One code path for chdb (``chdb://dir``) and a ClickHouse server (``http://host:8123``).

chdb runs the ClickHouse engine inside the process and allows one data directory per process, opened by
exactly one process at a time. In embedded mode every stage that touches ClickHouse (the store writer and
the API) therefore runs in one process; ``palaver up`` arranges that.

Calls run concurrently, each on a client of its own from a small pool, so one slow query holds one client
and not every other call. A client takes one call at a time, whatever the backend:

- chdb: a client owns one connection handle to the process's engine. A handle runs one query at a time
  (a second one waits for the first; clickhouse-connect also locks each handle). Several handles to the
  one engine run queries in parallel; tried with chdb 4.4 (engine 26.9): four handles in four threads ran
  parameterized selects, inserts with dedup tokens and parameterized INSERT ... SELECT commands at once,
  thousands of each, every answer and row right.
- http: a client keeps a ClickHouse session, and a session takes one query at a time (clickhouse-connect
  refuses a second concurrent call on one client: "Attempt to execute concurrent queries within the same
  session"). Clients of the pool share clickhouse-connect's process-wide HTTP connection pool.
"""

from __future__ import annotations

import asyncio
import logging
import queue
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import clickhouse_connect

from palaver.settings import Settings
from palaver.store.migrations import apply_migrations

log = logging.getLogger(__name__)


class ClientPool:
    """Clients of one ClickHouse, each lent to one call at a time; a call waits while all are lent."""

    def __init__(self, clients: Sequence[Any]):
        if not clients:
            raise ValueError("a client pool needs at least one client")
        self._clients = list(clients)
        self._idle: queue.SimpleQueue[Any] = queue.SimpleQueue()
        for client in self._clients:
            self._idle.put(client)

    def __len__(self) -> int:
        return len(self._clients)

    @contextmanager
    def lend(self) -> Iterator[Any]:
        client = self._idle.get()
        try:
            yield client
        finally:
            self._idle.put(client)

    def close(self) -> None:
        """Close every client; only once no call is running."""
        for client in self._clients:
            client.close()


class Store:
    """ClickHouse calls for one database. ``clients`` is a ``ClientPool`` (calls run concurrently, one per
    client) or a single client (calls run one at a time)."""

    def __init__(self, clients: ClientPool | Any, database: str):
        self._pool = clients if isinstance(clients, ClientPool) else ClientPool([clients])
        self.database = database

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any:
        with self._pool.lend() as client:
            return client.command(sql, parameters=parameters)

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self._pool.lend() as client:
            result = client.query(sql, parameters=parameters)
        return [dict(zip(result.column_names, row, strict=True)) for row in result.result_rows]

    def insert(self, table: str, rows: Sequence[Sequence[Any]], columns: Sequence[str], token: str) -> None:
        """Insert rows; a retry with the same ``token`` is dropped by ClickHouse's insert deduplication."""
        with self._pool.lend() as client:
            client.insert(
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
        self._pool.close()


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


def connect_pool(dsn: str, size: int) -> ClientPool:
    """``size`` clients of the ClickHouse at ``dsn`` (for chdb: handles to this process's one engine)."""
    if size < 1:
        raise ValueError(f"a client pool needs at least one client, not {size}")
    clients: list[Any] = []
    try:
        for _ in range(size):
            clients.append(connect(dsn))
    except Exception:
        for client in clients:
            client.close()
        raise
    return ClientPool(clients)


def open_store(settings: Settings, database: str | None = None, migrate: bool = True) -> Store:
    """Open the configured ClickHouse and (by default) apply pending migrations."""
    store = Store(
        connect_pool(settings.clickhouse_dsn, settings.clickhouse_clients),
        database or settings.clickhouse_database,
    )
    if migrate:
        applied = apply_migrations(store)
        if applied:
            log.info("applied migrations %s to %s", applied, store.database)
    return store
