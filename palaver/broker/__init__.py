"""The embedded single-node Kafka broker (KRaft), for running Palaver on one machine."""
