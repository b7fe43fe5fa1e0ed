"""Pure helpers of the cloud streaming engines: resampling, the resend buffer, keeping keys out of text."""

from __future__ import annotations

import logging

import numpy as np

from stt_workers.cloud_support import HeaderRedactionFilter, LinearResampler, PcmBuffer, redact
from stt_workers.openai_realtime_engine import spread_words


def test_resampler_output_does_not_depend_on_chunking() -> None:
    x = np.sin(np.arange(16000) * 2 * np.pi * 440 / 16000).astype(np.float32)
    whole = LinearResampler(16000, 24000).process(x)
    chunked = LinearResampler(16000, 24000)
    pieces = np.concatenate([chunked.process(x[i : i + 333]) for i in range(0, len(x), 333)])
    assert len(whole) == len(pieces) == (len(x) - 1) * 3 // 2 + 1
    np.testing.assert_allclose(whole, pieces, atol=1e-6)
    reference = np.sin(np.arange(len(whole)) * 2 * np.pi * 440 / 24000)
    assert np.max(np.abs(whole - reference)) < 0.02


def test_pcm_buffer_slices_and_trims_in_stream_samples() -> None:
    buf = PcmBuffer(start=100)
    buf.append(np.arange(10, dtype="<i2").tobytes())
    assert buf.end == 110
    assert np.frombuffer(buf.slice(105, 107), "<i2").tolist() == [5, 6]
    buf.trim(104)
    assert buf.start == 104 and np.frombuffer(buf.slice(0), "<i2").tolist() == [4, 5, 6, 7, 8, 9]
    buf.trim(90)  # never backwards
    assert buf.start == 104


def test_redact_drops_the_key_and_masked_echoes() -> None:
    text = redact("Incorrect API key provided: sk-ab************wxyz. Key sk-abcdefwxyz.", "sk-abcdefwxyz")
    assert "wxyz" not in text and "sk-ab" not in text


def test_header_filter_masks_credentials_in_handshake_records() -> None:
    record = logging.LogRecord("ws", logging.DEBUG, __file__, 1, "> %s: %s", ("Authorization", "Bearer k-1"), None)
    HeaderRedactionFilter().filter(record)
    assert record.getMessage() == "> Authorization: Bearer [REDACTED]"


def test_spread_words_shares_the_span_by_length() -> None:
    words = spread_words(["a", "bbb"], 0.5, 1.3)
    assert [(w.word, w.start_s, w.end_s) for w in words] == [("a", 0.5, 0.7), ("bbb", 0.7, 1.3)]
