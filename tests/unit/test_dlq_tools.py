"""How ``palaver dlq TOPIC`` names a dead-letter topic (no broker needed)."""

from __future__ import annotations

import pytest

from palaver.settings import Settings
from palaver.streams.dlq_tools import DlqToolError, resolve


def test_a_topic_or_its_dlq_names_the_dlq_in_the_namespace() -> None:
    ns = Settings(topic_namespace="prod")
    for name in ("transcripts", "transcripts.dlq", "prod.transcripts", "prod.transcripts.dlq"):
        ref = resolve(ns, name)
        assert (ref.source, ref.dlq) == ("prod.transcripts", "prod.transcripts.dlq")
    assert resolve(Settings(topic_namespace=""), "audio.frames").dlq == "audio.frames.dlq"
    with pytest.raises(DlqToolError, match=r"merger\.state has no dead-letter topic"):
        resolve(ns, "merger.state")
    with pytest.raises(DlqToolError, match=r"unknown topic 'transcript'; .*transcripts"):
        resolve(ns, "transcript")
