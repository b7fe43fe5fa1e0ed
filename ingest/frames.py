"""An audio.frame/1 record's Kafka headers, for every frame of one connection."""

from __future__ import annotations

from palaver.events import AudioFrameV1


class FrameHeaders:
    """What ``AudioFrameV1.kafka_headers`` gives for each frame of one connection, with everything but
    ``first_sample`` (the only header that changes from frame to frame) encoded once."""

    def __init__(self, template: AudioFrameV1):
        headers = template.kafka_headers()
        names = [name for name, _ in headers]
        at = names.index("first_sample")
        self._before, self._after = headers[:at], headers[at + 1 :]

    def at(self, first_sample: int) -> list[tuple[str, bytes]]:
        """The headers of the frame whose first sample is stream sample ``first_sample``."""
        return [*self._before, ("first_sample", str(first_sample).encode()), *self._after]
