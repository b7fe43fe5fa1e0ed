"""A streaming client for the ingest protocol (what a browser does), used by the demo, tests and bench."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

import numpy as np
import websockets


@dataclass(frozen=True)
class StreamResult:
    close_code: int
    close_reason: str
    acked_samples: int  # samples of this connection the server acknowledged as durable
    first_sample: int  # where the server placed this connection's audio in the stream


def ws_url(http_url: str) -> str:
    return http_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)


async def stream_pcm(
    base_url: str, meeting_id: str, speaker_id: str, pcm: np.ndarray, *, frame_ms: int = 100,
    speed: float = 1.0, sample_rate: int = 16000, language: str | None = None,
) -> StreamResult:  # fmt: skip
    """Send int16 ``pcm`` at ``speed`` x real time, then ``end``; wait for the server's close. ``language``
    (a Whisper language code) goes into the header; None leaves it to the STT worker's default."""
    url = f"{ws_url(base_url)}/v1/meetings/{meeting_id}/streams/{speaker_id}"
    step = sample_rate * frame_ms // 1000
    acked = 0
    first_sample = 0
    async with websockets.connect(url, max_size=None) as ws:
        header: dict[str, object] = {"sample_rate": sample_rate, "encoding": "pcm_s16le", "channels": 1}
        if language is not None:
            header["language"] = language
        await ws.send(json.dumps(header))

        async def read_acks() -> None:
            nonlocal acked, first_sample
            try:
                async for message in ws:
                    if isinstance(message, str):
                        body = json.loads(message)
                        if body.get("type") == "ready":
                            first_sample = body["first_sample"]
                        elif body.get("type") == "ack":
                            acked = body["samples"]
            except websockets.ConnectionClosed:
                pass

        reader = asyncio.create_task(read_acks())
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            for i, at in enumerate(range(0, len(pcm), step)):
                await ws.send(pcm[at : at + step].astype("<i2").tobytes())
                delay = started + (i + 1) * frame_ms / 1000 / speed - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
            await ws.send(json.dumps({"type": "end"}))
        except websockets.ConnectionClosed:
            pass  # the server closed early (bad input); its close code says why
        await reader
        assert ws.close_code is not None
        return StreamResult(ws.close_code, ws.close_reason or "", max(0, acked - first_sample), first_sample)
