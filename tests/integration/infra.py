"""Test infrastructure with one switch: testcontainers (Kafka and ClickHouse containers) when a Docker
engine answers, otherwise the embedded broker and chdb. The tests are the same either way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.harness import free_port

__all__ = ["Infra", "free_port", "infrastructure"]


@dataclass(frozen=True)
class Infra:
    kind: str  # "containers" | "embedded"
    bootstrap: str
    clickhouse_dsn: str
    broker_root: Path | None = None  # the embedded broker's directory (a test may stop and restart it)


def docker_available() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@contextmanager
def containers() -> Iterator[Infra]:
    from testcontainers.clickhouse import ClickHouseContainer
    from testcontainers.kafka import KafkaContainer

    with KafkaContainer("apache/kafka:4.1.0").with_kraft() as kafka, ClickHouseContainer() as clickhouse:
        host = clickhouse.get_container_host_ip()
        port = clickhouse.get_exposed_port(8123)
        dsn = f"http://{clickhouse.username}:{clickhouse.password}@{host}:{port}"
        yield Infra("containers", kafka.get_bootstrap_server(), dsn)


@contextmanager
def embedded(root: Path) -> Iterator[Infra]:
    from palaver.broker import embedded as broker

    port = free_port()
    broker.start(root / "kafka", port)
    try:
        yield Infra("embedded", f"127.0.0.1:{port}", f"chdb://{root / 'clickhouse'}", root / "kafka")
    finally:
        broker.stop(root / "kafka")


@contextmanager
def infrastructure(root: Path) -> Iterator[Infra]:
    with (containers() if docker_available() else embedded(root)) as infra:
        yield infra
