"""``palaver check``: whether a meeting went through the pipeline whole, in Jepsen's words.

Pure functions over plain data (the I/O edge that reads Kafka, ClickHouse and the clients' ack logs is
``stack/check.py``): ``audio`` judges the audio topic against the clients' acks, ``transcripts`` the
utterances and dialogues, ``report`` names what was found and renders it.
"""
