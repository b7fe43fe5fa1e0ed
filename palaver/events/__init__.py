"""Event contracts: the topic registry, one module per event version, the codec and example payloads."""

from palaver.events.audio_frame_v1 import AudioFrameV1
from palaver.events.chat_v1 import ChatMessageV1
from palaver.events.codec import DecodeError, decode, decode_on, encode
from palaver.events.dialogue_update_v1 import DialogueUpdateV1, DialogueUtterance
from palaver.events.edits_v1 import ActionItemEditedV1, DialogueEditedV1, TranscriptEditedV1
from palaver.events.meeting_watermark_v1 import MeetingWatermarkV1
from palaver.events.meetings_v1 import MeetingChangedV1, MeetingLinkV1, MeetingMemberV1
from palaver.events.sessions_v1 import SessionRevokedV1
from palaver.events.stream_lifecycle_v1 import StreamStartedV1, StreamStoppedV1
from palaver.events.stream_progress_v1 import StreamProgressV1
from palaver.events.transcript_final_v1 import TranscriptFinalV1, WordV1
from palaver.events.transcript_partial_v1 import TranscriptPartialV1
from palaver.events.users_v1 import UserChangedV1

__all__ = [
    "ActionItemEditedV1",
    "AudioFrameV1",
    "ChatMessageV1",
    "DecodeError",
    "DialogueEditedV1",
    "DialogueUpdateV1",
    "DialogueUtterance",
    "MeetingChangedV1",
    "MeetingLinkV1",
    "MeetingMemberV1",
    "MeetingWatermarkV1",
    "SessionRevokedV1",
    "StreamProgressV1",
    "StreamStartedV1",
    "StreamStoppedV1",
    "TranscriptEditedV1",
    "TranscriptFinalV1",
    "TranscriptPartialV1",
    "UserChangedV1",
    "WordV1",
    "decode",
    "decode_on",
    "encode",
]
