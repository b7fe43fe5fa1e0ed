"""Event contracts: the topic registry, one module per event version, the codec and example payloads."""

from palaver.events.audio_frame_v1 import AudioFrameV1
from palaver.events.codec import DecodeError, decode, encode
from palaver.events.dialogue_update_v1 import DialogueUpdateV1
from palaver.events.stream_lifecycle_v1 import StreamStartedV1, StreamStoppedV1
from palaver.events.transcript_final_v1 import TranscriptFinalV1, WordV1

__all__ = [
    "AudioFrameV1",
    "DecodeError",
    "DialogueUpdateV1",
    "StreamStartedV1",
    "StreamStoppedV1",
    "TranscriptFinalV1",
    "WordV1",
    "decode",
    "encode",
]
