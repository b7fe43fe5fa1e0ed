"""The declared metric catalogue. Services import metrics from here; no ad-hoc metric names elsewhere."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)

INGEST_ACTIVE_STREAMS = Gauge("palaver_ingest_active_streams", "Audio streams connected to ingest")
INGEST_FRAMES = Counter("palaver_ingest_frames_total", "Audio frames accepted by ingest")
INGEST_REJECTED = Counter(
    "palaver_ingest_rejected_streams_total", "Streams closed for bad input, by close code", ["code"]
)
SOCKETS_REFUSED = Counter(
    "palaver_sockets_refused_total",
    "New sockets refused with 1013 (try again later) because the process held its most of them, by socket: "
    "ingest (PALAVER_INGEST_MAX_STREAMS), live (PALAVER_LIVE_MAX_SOCKETS)",
    ["socket"],
)
STT_UTTERANCES = Counter("palaver_stt_utterances_total", "Final utterances emitted", ["engine"])
STT_DECODE_SECONDS = Histogram(
    "palaver_stt_decode_seconds", "Wall time of one decode call", ["engine"], buckets=LATENCY_BUCKETS
)
STT_FINAL_LATENCY = Histogram(
    "palaver_stt_final_latency_seconds",
    "End of speech (its audio reaching Kafka) to final produced",
    buckets=LATENCY_BUCKETS,
)
STT_PARTIAL_LATENCY = Histogram(
    "palaver_stt_partial_latency_seconds",
    "End of the audio a partial covers (reaching Kafka) to partial produced",
    buckets=LATENCY_BUCKETS,
)
STT_SPEECH_STREAMS = Gauge("palaver_stt_speech_streams", "Owned streams with an utterance in progress")
STT_REAL_TIME_FACTOR = Histogram(
    "palaver_stt_real_time_factor",
    "Decode wall time / seconds of audio decoded, per batched call (below 1: faster than real time)",
    buckets=(0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
)
STT_ACTIVE_STREAMS = Gauge("palaver_stt_active_streams", "Streams owned by this STT worker")
STT_BATCH_SIZE = Histogram(
    "palaver_stt_decode_batch_size", "Requests decoded in one batched call", buckets=(1, 2, 3, 4, 6, 8, 12, 16)
)
STT_DROPPED_PARTIALS = Counter("palaver_stt_dropped_partials_total", "Partial decodes dropped as stale under load")
STT_REFUSED_STREAMS = Counter(
    "palaver_stt_refused_streams_total",
    "Streams a cloud engine refused (their language): not transcribed until they stop",
    ["engine"],
)
MERGER_DIALOGUE_UPDATES = Counter("palaver_merger_dialogue_updates_total", "Dialogue events produced")
STORE_ROWS = Counter("palaver_store_rows_total", "Rows inserted into ClickHouse", ["table"])
STORE_BATCH_SECONDS = Histogram(
    "palaver_store_batch_seconds", "Wall time of one ClickHouse batch insert", buckets=LATENCY_BUCKETS
)
DLQ_MESSAGES = Counter("palaver_dlq_messages_total", "Messages dead-lettered", ["service", "topic"])
CONSUMER_LAG = Gauge(
    "palaver_consumer_lag_messages",
    "Messages of an owned partition not yet consumed (highwater minus position)",
    ["service", "topic", "partition"],
)
CONSUMER_SKIPPED_MESSAGES = Counter(
    "palaver_consumer_skipped_messages_total",
    "Messages a group-less reader (the live fan-out) could not handle and skipped",
    ["service", "topic"],
)
BACKGROUND_RESTARTS = Counter(
    "palaver_background_restarts_total",
    "Restarts of a web process's background consumer (store writer, live hub) after it failed",
    ["task"],
)
API_LIVE_SOCKETS = Gauge("palaver_api_live_sockets", "Open live dialogue WebSockets")
ENRICHMENT_JOBS = Counter(
    "palaver_enrichment_jobs_total",
    "Enrichments of meetings, by trigger and outcome (ok; fallback: the local backend stood in; failed: tried again)",
    ["trigger", "outcome"],
)
ENRICHMENT_SECONDS = Histogram(
    "palaver_enrichment_seconds",
    "Time from an enrichment's start (reading the transcript) to its result delivered",
    ["trigger"],
    buckets=(0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120),
)
WEBHOOK_DELIVERIES = Counter(
    "palaver_webhook_deliveries_total",
    "Webhook deliveries of meetings' final results (one per result and URL), by outcome: ok (accepted), failed "
    "(given up: a permanent refusal or the retry budget spent); retried counts each attempt tried again",
    ["outcome"],
)
WEBHOOK_DELIVERY_SECONDS = Histogram(
    "palaver_webhook_delivery_seconds",
    "Time from a webhook delivery's first attempt to its end (accepted or given up), retries included",
    ["outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300),
)

# Enrichment's remote backends (enrichment/http_calls.py, enrichment/fallback.py).
ENRICHMENT_REQUEST_BUCKETS = (0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
ENRICHMENT_BACKEND_ERRORS = Counter(
    "palaver_enrichment_backend_errors_total",
    "Failed requests to a remote enrichment backend, each attempt (retried or not), by reason: rate_limited, "
    "server_error, timeout, connection, client_error, invalid_output",
    ["backend", "reason"],
)
ENRICHMENT_FALLBACKS = Counter(
    "palaver_enrichment_fallbacks_total",
    "Meetings a remote enrichment backend failed on (after its retries) and the local backend enriched",
    ["backend"],
)
ENRICHMENT_AUTOCORRECTIONS = Counter(
    "palaver_enrichment_autocorrections_total",
    "Dialogues auto-corrected, by the backend asked and whose correction was kept: remote (the model's), "
    "rejected (the model's changed too many words: the local one instead), failed (the model failed after its "
    "retries, or the dialogue is too long for one request: the local one), local (the local backend was asked)",
    ["backend", "outcome"],
)
ENRICHMENT_REQUEST_SECONDS = Histogram(
    "palaver_enrichment_request_seconds",
    "Wall time of one request to a remote enrichment backend (a streamed one: to its last byte), by kind: "
    "token, json, stream",
    ["backend", "kind"],
    buckets=ENRICHMENT_REQUEST_BUCKETS,
)

# The supervisor process (``palaver up``, ``palaver run stt --workers N``) serves only its own registry: the
# services' metrics would read zero there.
SUPERVISOR_REGISTRY = CollectorRegistry()
SUPERVISOR_RESTARTS = Counter(
    "palaver_supervisor_restarts_total",
    "Children the supervisor started again after they died",
    ["child"],
    registry=SUPERVISOR_REGISTRY,
)
