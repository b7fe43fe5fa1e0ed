"""How every Kafka client of Palaver authenticates to a secured cluster: TLS and SASL from the settings.

``client_security(settings)`` gives the aiokafka keyword arguments (``security_protocol``, ``ssl_context``,
``sasl_*``) that ``palaver.streams.clients`` passes to every producer, consumer and admin client it makes;
nothing else in Palaver makes a Kafka client. Under ``PLAINTEXT`` (the default, and the embedded broker's
only listener) it gives nothing, so the clients keep aiokafka's defaults.

- ``SSL`` / ``SASL_SSL``: the broker's certificate is verified against ``PALAVER_KAFKA_SSL_CAFILE`` (else the
  system's CAs), host name included; ``PALAVER_KAFKA_SSL_CERTFILE`` + ``_KEYFILE`` add a client certificate
  (mutual TLS).
- ``SASL_PLAINTEXT`` / ``SASL_SSL``: ``PALAVER_KAFKA_SASL_MECHANISM`` (``PLAIN``, ``SCRAM-SHA-256``,
  ``SCRAM-SHA-512``) with ``PALAVER_KAFKA_SASL_USERNAME`` and ``_PASSWORD`` (a secret: never shown).
  ``SASL_PLAINTEXT`` sends the PLAIN password in the clear: use it only on a trusted network.

A setting that cannot work (SASL without a username, a key without its certificate, a missing file) raises
``KafkaSecurityError`` with a message naming the setting, before any connection is tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiokafka.helpers import create_ssl_context

from palaver.settings import Settings


class KafkaSecurityError(ValueError):
    """The Kafka security settings cannot work; the message names the setting to fix."""


def client_security(settings: Settings) -> dict[str, Any]:
    """The aiokafka keyword arguments for the configured security; ``{}`` under PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    config: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        config["ssl_context"] = _ssl_context(settings)
    if protocol in ("SASL_PLAINTEXT", "SASL_SSL"):
        if not settings.kafka_sasl_username or settings.kafka_sasl_password is None:
            raise KafkaSecurityError(f"PALAVER_KAFKA_SECURITY_PROTOCOL={protocol} needs PALAVER_KAFKA_SASL_USERNAME "
                                     "and PALAVER_KAFKA_SASL_PASSWORD")  # fmt: skip
        config |= {"sasl_mechanism": settings.kafka_sasl_mechanism,
                   "sasl_plain_username": settings.kafka_sasl_username,
                   "sasl_plain_password": settings.kafka_sasl_password.get_secret_value()}  # fmt: skip
    return config


def _ssl_context(settings: Settings) -> Any:
    files = {"PALAVER_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
             "PALAVER_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
             "PALAVER_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile}  # fmt: skip
    for name, path in files.items():
        if path is not None and not Path(path).is_file():
            raise KafkaSecurityError(f"{name}={path}: no such file")
    if (settings.kafka_ssl_certfile is None) != (settings.kafka_ssl_keyfile is None):
        raise KafkaSecurityError("a client certificate needs both PALAVER_KAFKA_SSL_CERTFILE and PALAVER_KAFKA_SSL_KEYFILE")
    try:
        return create_ssl_context(cafile=settings.kafka_ssl_cafile, certfile=settings.kafka_ssl_certfile,
                                  keyfile=settings.kafka_ssl_keyfile)  # fmt: skip
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is no PEM, a wrong key
        raise KafkaSecurityError(f"the Kafka TLS files cannot be loaded: {exc}") from exc
