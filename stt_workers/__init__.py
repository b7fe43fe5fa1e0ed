"""STT workers: a Kafka consumer group that turns each stream's audio into final transcript events."""
