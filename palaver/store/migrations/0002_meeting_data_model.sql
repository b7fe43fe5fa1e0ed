-- The meeting data model. Rows that change are ReplacingMergeTree(version) upserts read with FINAL; every
-- row keeps its event id and Kafka provenance; derived rows carry the run (engine:model) that made them.
CREATE TABLE IF NOT EXISTS {db}.users (
    user_id String,
    username String,
    email String,
    password_hash String,
    role LowCardinality(String),
    profile_pic_url String,
    created_at DateTime64(3) DEFAULT now64(3),
    updated_at DateTime64(3) DEFAULT now64(3),
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS {db}.meetings (
    meeting_id String,
    title String,
    description String,
    date_time Nullable(DateTime64(3)),
    duration_ms Int64,
    organizer_id String,
    conference_active UInt8,
    created_at DateTime64(3) DEFAULT now64(3),
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY meeting_id;

CREATE TABLE IF NOT EXISTS {db}.participants (
    meeting_id String,
    user_id String,
    role LowCardinality(String),
    stream_id String,
    stream_start_ms Int64,
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (meeting_id, user_id);

-- One merged transcript per meeting and run, rebuilt from the final dialogues whenever the watermark
-- finalizes more of them (revision = number of final dialogues) or a human edits a dialogue.
CREATE TABLE IF NOT EXISTS {db}.transcripts (
    transcript_id String,
    meeting_id String,
    run String,
    raw_transcript String,
    processed_transcript String,
    language LowCardinality(String),
    revision UInt64,
    watermark_ms Int64,
    created_at DateTime64(3) DEFAULT now64(3),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (meeting_id, run);

CREATE TABLE IF NOT EXISTS {db}.summaries (
    summary_id String,
    meeting_id String,
    run String,
    summary_type LowCardinality(String),
    text String,
    revision UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(revision)
ORDER BY (meeting_id, run, summary_type, summary_id);

CREATE TABLE IF NOT EXISTS {db}.action_items (
    action_item_id String,
    meeting_id String,
    run String,
    description String,
    assigned_to String,
    status LowCardinality(String),
    priority LowCardinality(String),
    start_date Nullable(Date),
    due_date Nullable(Date),
    source_dialogue_id String,
    revision UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(revision)
ORDER BY (meeting_id, run, action_item_id);

CREATE TABLE IF NOT EXISTS {db}.chat_messages (
    message_id String,
    meeting_id String,
    user_id String,
    text String,
    sent_at DateTime64(3),
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree(version)
ORDER BY (meeting_id, message_id);

-- Human edits: every edit is a row (the history); reads overlay each target's latest edit on the
-- machine's text, so re-processing never overwrites a human edit.
CREATE TABLE IF NOT EXISTS {db}.edits (
    edit_id String,
    meeting_id String,
    target_kind LowCardinality(String),
    target_id String,
    action LowCardinality(String),
    text Nullable(String),
    fields String,
    editor String,
    edited_at_ms Int64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree
ORDER BY (meeting_id, target_kind, target_id, edit_id)
SETTINGS non_replicated_deduplication_window = 1000;

ALTER TABLE {db}.dialogues ADD COLUMN IF NOT EXISTS transcript_id String AFTER speaker_id;
