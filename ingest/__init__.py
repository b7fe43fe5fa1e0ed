"""Ingest: one WebSocket per speaker streams PCM audio into Kafka, keyed by stream, acknowledged once durable."""
