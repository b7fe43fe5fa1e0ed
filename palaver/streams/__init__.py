"""Kafka plumbing shared by every service: clients, topic creation, the consumer loop, the DLQ."""
