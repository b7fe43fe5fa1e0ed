"""The spoken languages a stream may ask for: Whisper's language codes (ISO 639-1, plus ``haw`` and ``yue``
where 639-1 has none).

Kept here as data instead of importing ``faster_whisper.tokenizer`` so that ingest and the event schemas
need no speech stack; ``tests/unit/test_languages.py`` checks the list still equals faster-whisper's.
"""

from __future__ import annotations

# fmt: off
WHISPER_LANGUAGES = frozenset((
    "af", "am", "ar", "as", "az", "ba", "be", "bg", "bn", "bo", "br", "bs", "ca", "cs", "cy", "da", "de",
    "el", "en", "es", "et", "eu", "fa", "fi", "fo", "fr", "gl", "gu", "ha", "haw", "he", "hi", "hr", "ht",
    "hu", "hy", "id", "is", "it", "ja", "jw", "ka", "kk", "km", "kn", "ko", "la", "lb", "ln", "lo", "lt",
    "lv", "mg", "mi", "mk", "ml", "mn", "mr", "ms", "mt", "my", "ne", "nl", "nn", "no", "oc", "pa", "pl",
    "ps", "pt", "ro", "ru", "sa", "sd", "si", "sk", "sl", "sn", "so", "sq", "sr", "su", "sv", "sw", "ta",
    "te", "tg", "th", "tk", "tl", "tr", "tt", "uk", "ur", "uz", "vi", "yi", "yo", "zh", "yue",
))
# fmt: on

ENGLISH = "en"  # the only language an English-only model (``*.en``, the bundled tiny.en) decodes


def is_language(code: object) -> bool:
    """True for one of Whisper's language codes, exactly as Whisper spells it (lowercase, no region)."""
    return isinstance(code, str) and code in WHISPER_LANGUAGES


def check_language(code: str | None) -> str | None:
    """``code`` when it is None or a Whisper language code; raises ``ValueError`` otherwise."""
    if code is not None and not is_language(code):
        raise ValueError(f"unknown language {code!r}: use a Whisper language code such as 'en' or 'de'")
    return code
