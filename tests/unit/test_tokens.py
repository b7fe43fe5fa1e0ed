"""Signed tokens: what verifies, and every way one does not."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor

import pytest

from palaver.auth.secret import load_secret
from palaver.auth.tokens import InvalidToken, fingerprint, sign, verify
from palaver.settings import Settings

SECRET = b"k" * 32


def test_a_token_verifies_with_its_claims() -> None:
    token = sign(SECRET, "access", {"sub": "usr_1", "sid": "s1"}, now_ms=1000, ttl_ms=500)
    claims = verify(SECRET, "access", token, now_ms=1499)
    assert claims == {"sub": "usr_1", "sid": "s1", "kind": "access", "exp": 1500}


@pytest.mark.parametrize(
    ("secret", "kind", "now_ms", "reason"),
    [
        (SECRET, "access", 1500, "expired"),
        (b"other" * 8, "access", 1000, "not a valid access token"),
        (SECRET, "ticket", 1000, "not a valid ticket token"),  # another kind's key
    ],
)
def test_expired_forged_or_foreign_kind_is_refused(secret: bytes, kind: str, now_ms: int, reason: str) -> None:
    token = sign(SECRET, "access", {"sub": "usr_1"}, now_ms=1000, ttl_ms=500)
    with pytest.raises(InvalidToken, match=reason):
        verify(secret, kind, token, now_ms=now_ms)


@pytest.mark.parametrize("token", ["", "abc", "a.b", ".", "x" * 5000, "e30.!!!"])
def test_garbage_is_refused(token: str) -> None:
    with pytest.raises(InvalidToken):
        verify(SECRET, "access", token, now_ms=0)


def test_a_changed_payload_breaks_the_signature() -> None:
    token = sign(SECRET, "access", {"sub": "usr_1"}, now_ms=0, ttl_ms=10_000)
    forged_payload = sign(SECRET, "access", {"sub": "usr_2"}, now_ms=0, ttl_ms=10_000).split(".")[0]
    with pytest.raises(InvalidToken, match="not a valid"):
        verify(SECRET, "access", f"{forged_payload}.{token.split('.')[1]}", now_ms=1)


def test_fingerprint_is_stable_and_short() -> None:
    assert fingerprint("scrypt$a") == fingerprint("scrypt$a") != fingerprint("scrypt$b")
    assert len(fingerprint("x")) == 16


def test_the_data_dir_key_is_made_once_private_and_shared(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path)
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: load_secret(settings), range(16)))
    assert len(keys) == 1 and len(keys.pop()) == 64
    assert stat.S_IMODE(os.stat(tmp_path / "secret_key").st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["secret_key"]


def test_the_configured_key_wins_and_a_short_file_is_refused(tmp_path) -> None:
    assert load_secret(Settings(data_dir=tmp_path, secret_key="s" * 40)) == b"s" * 40
    (tmp_path / "secret_key").write_text("short")
    with pytest.raises(RuntimeError, match="no usable key"):
        load_secret(Settings(data_dir=tmp_path))
