"""Palaver's shared kernel: event contracts, Kafka plumbing, the ClickHouse store, settings, metrics, CLI.

Services (ingest, stt_workers, merger, api) import this package and never each other.
"""

__version__ = "0.1.0"
