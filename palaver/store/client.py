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

A lost connection heals. A call whose client's connection is gone raises ``StoreUnavailable`` (a
``ConnectionError``: an environment failure, retried by the store writer, 503 from the API) and marks the
client broken; the next call lent that client gets a fresh connection to the same DSN first, and when
that fails it raises ``StoreUnavailable`` too (the client stays broken for the call after). "Gone" is what
clickhouse-connect raises then:

- http: ``OperationalError`` (the server did not answer). clickhouse-connect reconnects an HTTP session by
  itself once the server answers again; replacing the client costs one handshake and changes nothing else.
- chdb: a closed client raises ``ProgrammingError("The client has been closed")`` on every later call,
  forever: nothing in clickhouse-connect or chdb reopens it. Tried with chdb 4.4 and clickhouse-connect
  1.12, four clients on one data directory in one process: closing one leaves the other three answering;
  a client opened after that (same DSN) works at once, sees the same data, and the insert dedup log
  survives (a batch retried with its token on the new client is dropped); closing all four and opening
  four again works (about 70 ms) with data and dedup intact, five times in a row; a client closed while
  another thread runs queries on it raises the closed-client error at that thread's next call, and the
  close waits for a query in flight (clickhouse-connect's handle lock, per its source), so a closed
  client never ends an insert halfway. So the pool replaces only the broken client and leaves the others
  alone.

Messages and logs name the ClickHouse by ``redact_dsn`` (never its password).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import clickhouse_connect
from clickhouse_connect.driver.exceptions import OperationalError, ProgrammingError

from palaver.settings import Settings
from palaver.store.migrations import apply_migrations

log = logging.getLogger(__name__)


CLOSED_CLIENT = "The client has been closed"  # clickhouse-connect's ProgrammingError on a closed client
SECRET_PARAMETERS = ("password", "token", "secret", "key")  # DSN query parameters whose values are hidden


class StoreUnavailable(ConnectionError):
    """ClickHouse cannot be reached: a client's connection is gone, or a new one does not open. An environment
    failure (never a bad message or a bad request): try again later. The message never holds a password."""


def connection_gone(exc: BaseException) -> bool:
    """Whether ``exc``, raised by a client's call, means its connection is gone rather than a bad query: an
    ``OperationalError`` (the server did not answer) or the ``ProgrammingError`` of a closed client."""
    closed = isinstance(exc, ProgrammingError) and CLOSED_CLIENT in str(exc)
    return closed or isinstance(exc, OperationalError)


def _secret(parameter: str) -> bool:
    return any(word in parameter.lower() for word in SECRET_PARAMETERS)


def redact_dsn(dsn: str) -> str:
    """``dsn`` fit for a message: its password (and any secret-looking query parameter) as ``***``."""
    parts = urlsplit(dsn)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        user, _, host = netloc.rpartition("@")
        netloc = f"{user.partition(':')[0]}:***@{host}"
    pairs = parse_qsl(query, keep_blank_values=True)
    if any(_secret(k) for k, _ in pairs):
        query = urlencode([(k, "***" if _secret(k) else v) for k, v in pairs], safe="*")
    if (netloc, query) == (parts.netloc, parts.query):
        return dsn  # untouched (urlunsplit would also drop the "//" of "chdb:///dir")
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def scrub(text: str, dsn: str) -> str:
    """``text`` (an error message) without the secrets of ``dsn``: the DSN redacted, its password hidden."""
    if not dsn:
        return text
    text = text.replace(dsn, redact_dsn(dsn))
    parts = urlsplit(dsn)
    secrets = [parts.password or ""] + [v for k, v in parse_qsl(parts.query) if _secret(k)]
    for secret in secrets:
        for spelling in {secret, unquote(secret)}:
            if spelling:
                text = text.replace(spelling, "***")
    return text


def unavailable(message: str, exc: BaseException, dsn: str) -> StoreUnavailable:
    """A ``StoreUnavailable`` saying ``message`` and what ``exc`` said, scrubbed of ``dsn``'s secrets."""
    return StoreUnavailable(f"{message} ({type(exc).__name__}: {scrub(str(exc), dsn)})")


def cause(exc: BaseException, dsn: str) -> BaseException | None:
    """What to chain a ``StoreUnavailable`` to (``raise ... from cause(exc, dsn)``): ``exc``, for its
    traceback, unless ``dsn`` has a secret that the chained messages could show."""
    return exc if redact_dsn(dsn) == dsn else None


class ClientPool:
    """Clients of one ClickHouse, each lent to one call at a time; a call waits while all are lent.

    The pool heals (see the module's docstring): a call that fails because its client's connection is gone
    raises ``StoreUnavailable`` and leaves its client broken; lending a broken client first replaces it with
    ``reconnect()`` (a new client of the same ClickHouse), and when that fails the call raises
    ``StoreUnavailable`` and the client stays broken. Without ``reconnect`` a broken client is lent as it is.
    ``dsn`` names the ClickHouse in messages, redacted."""

    def __init__(self, clients: Sequence[Any], reconnect: Callable[[], Any] | None = None, dsn: str = ""):
        if not clients:
            raise ValueError("a client pool needs at least one client")
        self._clients = list(clients)  # by place; a lent place belongs to its call
        self._broken = [False] * len(self._clients)
        self._reconnect = reconnect
        self._dsn = dsn
        self._name = f"ClickHouse {redact_dsn(dsn)}" if dsn else "ClickHouse"
        self._closed = False
        self._closing = threading.Lock()  # a reconnect and close() never cross
        self._idle: queue.SimpleQueue[int] = queue.SimpleQueue()
        for place in range(len(self._clients)):
            self._idle.put(place)

    def __len__(self) -> int:
        return len(self._clients)

    @property
    def clients(self) -> tuple[Any, ...]:
        """The clients now in the pool (some may be lent to calls running now)."""
        return tuple(self._clients)

    @contextmanager
    def lend(self) -> Iterator[Any]:
        """A client for one call. Raises ``StoreUnavailable`` when the pool is closed, when its client is
        broken and cannot be replaced, and (instead of the client's error) when the call finds its client's
        connection gone."""
        place = self._idle.get()
        try:
            client = self._healthy(place)
            try:
                yield client
            except Exception as exc:
                if not connection_gone(exc):
                    raise
                self._broken[place] = True
                log.warning("%s: a client's connection is gone (%s: %s); it reconnects on its next call",
                            self._name, type(exc).__name__, scrub(str(exc), self._dsn))  # fmt: skip
                gone = unavailable(f"{self._name} is unavailable: the connection is gone", exc, self._dsn)
                raise gone from cause(exc, self._dsn)
        finally:
            self._idle.put(place)

    def _healthy(self, place: int) -> Any:
        """The client of ``place``, replaced first when it is broken (and the pool can reconnect)."""
        if self._closed:
            raise StoreUnavailable(f"{self._name}: the store is closed")
        if not self._broken[place] or self._reconnect is None:
            return self._clients[place]
        with contextlib.suppress(Exception):  # its connection is gone already; closing frees what is left
            self._clients[place].close()
        try:
            fresh = self._reconnect()
        except StoreUnavailable:
            raise
        except Exception as exc:
            failed = unavailable(f"{self._name} is unavailable: reconnecting failed", exc, self._dsn)
            raise failed from cause(exc, self._dsn)
        with self._closing:
            if self._closed:
                fresh.close()
                raise StoreUnavailable(f"{self._name}: the store is closed")
            self._clients[place] = fresh
            self._broken[place] = False
        log.info("%s: a client reconnected", self._name)
        return fresh

    def close(self) -> None:
        """Close every client; only once no call is running. Later calls raise ``StoreUnavailable``."""
        with self._closing:
            self._closed = True
            for client in self._clients:
                client.close()


class Store:
    """ClickHouse calls for one database. ``clients`` is a ``ClientPool`` (calls run concurrently, one per
    client) or a single client (calls run one at a time). Every call raises ``StoreUnavailable`` when
    ClickHouse cannot be reached; the next call tries again on a fresh connection."""

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
    """A client of the ClickHouse at ``dsn``; raises ``StoreUnavailable`` when it does not open."""
    if dsn.startswith("chdb://"):
        Path(dsn.removeprefix("chdb://")).mkdir(parents=True, exist_ok=True)
    try:
        return clickhouse_connect.get_client(dsn=dsn)
    except Exception as exc:
        hint = (
            "; chdb allows one data directory per process and one process per data directory:"
            " is another Palaver process using it?"
            if dsn.startswith("chdb://")
            else ""
        )
        raise unavailable(f"cannot open ClickHouse at {redact_dsn(dsn)}{hint}", exc, dsn) from cause(exc, dsn)


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
    return ClientPool(clients, reconnect=lambda: connect(dsn), dsn=dsn)


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
