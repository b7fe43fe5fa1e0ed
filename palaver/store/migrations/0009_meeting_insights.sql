-- Enrichment's results (MeetingInsightsV1): one row per enrichment run of a meeting holds the whole result
-- (keywords, mood, agenda, metrics as JSON; the newest revision wins). Its summaries and action items also
-- go to the summaries and action_items tables, one row each, so edits and search address them by id.
CREATE TABLE IF NOT EXISTS {db}.meeting_insights (
    enrichment_id String,
    meeting_id String,
    run String,
    transcript_run String,
    backend LowCardinality(String),
    trigger LowCardinality(String),
    final Bool,
    transcript_revision UInt64,
    revision UInt64,
    result String,
    fallback String,
    produced_at_ms Int64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(revision)
ORDER BY (meeting_id, run)
SETTINGS non_replicated_deduplication_window = 1000;

-- An action item belongs to the result that last listed it: a task the meeting cancelled is absent from the
-- newer result, and reads keep the items of the newest revision only.
ALTER TABLE {db}.action_items ADD COLUMN IF NOT EXISTS dialogue_ids Array(String) AFTER source_dialogue_id;
ALTER TABLE {db}.action_items ADD COLUMN IF NOT EXISTS assignee_id String AFTER assigned_to;
