"""Keeps unit tests off real infrastructure. In a test not marked ``integration``, opening a Kafka client,
a ClickHouse client (a server's or chdb's) or the embedded broker fails at once, saying which test did it
and what to do instead.

Each entry point is the one call a library makes on its way out of the process, so the guard holds
whichever wrapper or alias a test reaches it by: every aiokafka producer, consumer and admin client
bootstraps through ``AIOKafkaClient.bootstrap``; every chdb connection (through clickhouse-connect,
``chdb.connect``, ``chdb.query`` or a chdb session) opens through ``chdb._chdb.connect``. A child process
a test starts is not guarded.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import pytest


class RealInfrastructureInUnitTest(BaseException):
    """Raised by a guarded entry point. A BaseException, like pytest's own outcomes, so that the code under
    test cannot catch it with ``except Exception``: a retry loop would hide it, a wrapper would reword it."""


@dataclass(frozen=True)
class EntryPoint:
    module: str
    attribute: str  # "function" or "Class.method", in ``module``
    what: str

    def refusal(self, test: str) -> Callable[..., NoReturn]:
        def refuse(*args: object, **kwargs: object) -> NoReturn:
            raise RealInfrastructureInUnitTest(
                f"{test} opened {self.what} ({self.module}.{self.attribute}), but it is not marked integration. "
                "A unit test uses a fake; a test against the real broker or ClickHouse belongs in "
                "tests/integration (marked by its module's pytestmark = pytest.mark.integration)."
            )

        return refuse


ENTRY_POINTS = (
    EntryPoint("aiokafka.client", "AIOKafkaClient.bootstrap", "a Kafka client (producer, consumer or admin)"),
    EntryPoint("clickhouse_connect.driver.httpclient", "HttpClient.__init__", "a ClickHouse server client"),
    EntryPoint("clickhouse_connect.driver.asyncclient", "AsyncClient.__init__", "an async ClickHouse client"),
    EntryPoint("chdb._chdb", "connect", "a chdb (embedded ClickHouse) connection"),
    EntryPoint("palaver.broker.embedded", "start", "the embedded Kafka broker"),
)


def refuse_infrastructure(monkeypatch: pytest.MonkeyPatch, test: str) -> None:
    """Replace every entry point with one that raises RealInfrastructureInUnitTest naming ``test``, until
    ``monkeypatch`` undoes it (at the end of the test)."""
    for entry in ENTRY_POINTS:
        owner: object = importlib.import_module(entry.module)
        *path, name = entry.attribute.split(".")
        for part in path:
            owner = getattr(owner, part)
        monkeypatch.setattr(owner, name, entry.refusal(test))
