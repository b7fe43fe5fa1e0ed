"""ClickHouse, through clickhouse-connect only: chdb in-process by default, a server when configured."""

from palaver.store.client import Store, open_store

__all__ = ["Store", "open_store"]
