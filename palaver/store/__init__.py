"""ClickHouse, through clickhouse-connect only: chdb in-process by default, a server when configured."""

from palaver.store.client import Store, StoreUnavailable, open_store

__all__ = ["Store", "StoreUnavailable", "open_store"]
