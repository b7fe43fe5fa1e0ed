-- Utterances (STT finals) and dialogues (merger output). Rows are upserts: ReplacingMergeTree keeps the
-- highest version per key, reads use FINAL, and every row keeps its event id and Kafka provenance.
CREATE TABLE IF NOT EXISTS {db}.utterances (
    utterance_id String,
    meeting_id String,
    stream_id String,
    speaker_id String,
    run String,
    start_ms Int64,
    end_ms Int64,
    start_sample Int64,
    end_sample Int64,
    sample_rate UInt32,
    text String,
    words String,
    confidence Float32,
    language LowCardinality(String),
    engine LowCardinality(String),
    model String,
    version UInt64,
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(version)
ORDER BY (meeting_id, run, utterance_id)
SETTINGS non_replicated_deduplication_window = 1000;

CREATE TABLE IF NOT EXISTS {db}.dialogues (
    dialogue_id String,
    meeting_id String,
    speaker_id String,
    run String,
    start_ms Int64,
    end_ms Int64,
    dialogue_text String,
    status LowCardinality(String),
    revision UInt64,
    position UInt32,
    utterance_ids Array(String),
    event_id String,
    kafka_topic String,
    kafka_partition Int32,
    kafka_offset Int64,
    inserted_at DateTime64(3) DEFAULT now64(3)
) ENGINE = ReplacingMergeTree(revision)
ORDER BY (meeting_id, run, dialogue_id)
SETTINGS non_replicated_deduplication_window = 1000;
