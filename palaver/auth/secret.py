"""The server's secret key: it signs sessions, access tokens and tickets, so every API and ingest process
of one deployment must share it. ``PALAVER_SECRET_KEY`` sets it; without it, the processes on one machine
share a key made once in the data dir (``<data dir>/secret_key``, mode 0600)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from palaver.settings import Settings

KEY_FILE = "secret_key"
MIN_KEY_CHARS = 32


def load_secret(settings: Settings) -> bytes:
    """The secret from the settings, else the data dir's (made on first use, race-free across processes)."""
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = Path(settings.data_dir) / KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole to a private file first, then linked into place: link fails when another process
        # won the race, and nobody ever reads a half-written key.
        draft = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_hex(32))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass
        finally:
            draft.unlink()
    key = path.read_text().strip()
    if len(key) < MIN_KEY_CHARS:
        raise RuntimeError(f"{path} holds no usable key ({MIN_KEY_CHARS}+ characters); replace or delete it")
    return key.encode()
