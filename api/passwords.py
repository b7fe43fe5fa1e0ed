"""Password hashing with the standard library's scrypt: salted, memory-hard, parameters in the string.

A stored hash reads ``scrypt$n=16384,r=8,p=5$<salt>$<key>`` (salt and key in unpadded url-safe base64),
so the parameters can be raised later and old hashes still verify. The plaintext is never logged, never
put in an event and never returned; callers hash it and drop it. Both functions cost a few hundred ms of
CPU and 16 MiB: call them off the event loop (``asyncio.to_thread``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

SCHEME = "scrypt"
# One of OWASP's equivalent scrypt minimums (N=2^17,r=8,p=1 ~ N=2^14,r=8,p=5): 16 MiB per hash, not 128.
N, R, P = 2**14, 8, 5
SALT_BYTES = 16
KEY_BYTES = 32
_MAX_N = 2**20  # refuse absurd parameters in a stored string instead of exhausting memory


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _derive(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=n, r=r, p=p, dklen=dklen, maxmem=256 * n * r + (1 << 20)
    )


def hash_password(password: str, *, n: int = N, r: int = R, p: int = P) -> str:
    """A new salted hash of ``password``; two calls with the same password give different strings."""
    salt = os.urandom(SALT_BYTES)
    key = _derive(password, salt, n, r, p, KEY_BYTES)
    return f"{SCHEME}$n={n},r={r},p={p}${_b64(salt)}${_b64(key)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (in constant time). A malformed or unknown hash is False."""
    try:
        scheme, params, salt_text, key_text = stored.split("$")
        values = dict(item.split("=", 1) for item in params.split(","))
        n, r, p = int(values["n"]), int(values["r"]), int(values["p"])
        salt, key = _unb64(salt_text), _unb64(key_text)
    except (ValueError, KeyError):
        return False
    if (
        scheme != SCHEME
        or not (1 < n <= _MAX_N and n & (n - 1) == 0 and 0 < r <= 32 and 0 < p <= 16)
        or not key
    ):
        return False
    return hmac.compare_digest(_derive(password, salt, n, r, p, len(key)), key)


def needs_rehash(stored: str) -> bool:
    """Whether ``stored`` was made with other parameters than today's (re-hash on the next password use)."""
    return not stored.startswith(f"{SCHEME}$n={N},r={R},p={P}$")
