-- Meetings as resources (events on the meetings topic): the meeting row gains what the API keeps of it,
-- members and share links get tables of their own, and ended sign-ins one more. A meeting row that a
-- stream's start made (version 0) always loses to the API's (versions are ms since the epoch).
ALTER TABLE {db}.meetings ADD COLUMN IF NOT EXISTS agenda Array(String) AFTER description;
ALTER TABLE {db}.meetings ADD COLUMN IF NOT EXISTS created_at_ms Int64 DEFAULT 0 AFTER organizer_id;
ALTER TABLE {db}.meetings ADD COLUMN IF NOT EXISTS ended_at_ms Nullable(Int64) AFTER created_at_ms;
ALTER TABLE {db}.meetings ADD COLUMN IF NOT EXISTS deleted UInt8 DEFAULT 0 AFTER ended_at_ms;

CREATE TABLE IF NOT EXISTS {db}.meeting_members (
    meeting_id String,
    user_id String,
    role LowCardinality(String),
    status LowCardinality(String),
    via_link String,
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (meeting_id, user_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.meeting_links (
    meeting_id String,
    link_id String,
    role LowCardinality(String),
    revoked UInt8,
    created_at_ms Int64,
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (meeting_id, link_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.revoked_sessions (
    session_id String,
    user_id String,
    revoked_at_ms Int64,
    expires_at_ms Int64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64
) ENGINE = ReplacingMergeTree
ORDER BY session_id
SETTINGS non_replicated_deduplication_window = 1000;
