"""Serving HTTPS and WSS: ``--tls-cert FILE --tls-key FILE`` (or ``PALAVER_TLS_CERT_FILE`` / ``_KEY_FILE``).

uvicorn terminates TLS itself (``ssl_certfile``/``ssl_keyfile``), so REST, the docs, ``/metrics`` and both
WebSockets are served over it on the one port; browsers give a page microphone access only on HTTPS (or
localhost). ``palaver up`` hands the files to its web process as the same options.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from palaver.settings import Settings


class TlsSettingsError(ValueError):
    """The TLS files cannot be served; the message says which and why."""


def check_tls(settings: Settings) -> None:
    """Raise ``TlsSettingsError`` unless the certificate and key are both unset, or both set and loadable."""
    cert, key = settings.tls_cert_file, settings.tls_key_file
    if cert is None and key is None:
        return
    if cert is None or key is None:
        raise TlsSettingsError("HTTPS needs both --tls-cert and --tls-key (PALAVER_TLS_CERT_FILE, PALAVER_TLS_KEY_FILE)")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if not Path(path).is_file():
            raise TlsSettingsError(f"{option} {path}: no such file")
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise TlsSettingsError(f"cannot serve HTTPS with {cert} and {key}: {exc}") from exc


def uvicorn_tls(settings: Settings) -> dict[str, str]:
    """uvicorn's TLS options for the settings: none when HTTPS is off."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return {}
    return {"ssl_certfile": str(settings.tls_cert_file), "ssl_keyfile": str(settings.tls_key_file)}


def tls_args(settings: Settings) -> list[str]:
    """The command-line options that make a ``palaver run`` child serve the same HTTPS."""
    if settings.tls_cert_file is None or settings.tls_key_file is None:
        return []
    return ["--tls-cert", str(settings.tls_cert_file), "--tls-key", str(settings.tls_key_file)]
