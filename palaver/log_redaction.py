"""Keeps bearer secrets out of log lines: a ``logging.Filter`` that redacts them from every record it sees.

What a log line may carry that grants access to whoever reads it:

- query values of ``ticket``, ``token``, ``access_token`` and ``refresh_token`` (uvicorn's access log prints
  ``GET /path?ticket=...`` and its WebSocket lines ``WebSocket /path?ticket=...``);
- the credentials of an ``Authorization`` header (``Bearer ...``, ``Basic ...``);
- ``Cookie`` and ``Set-Cookie`` values (a session cookie is a bearer secret too), as a header line or as
  the ``(b'cookie', b'...')`` pair of an ASGI header list.

``RedactSecrets`` rewrites the record's message arguments one by one (so formatters that unpack the
arguments, as uvicorn's access formatter does, keep working), then checks the whole message and collapses
it to its redacted text when a secret still shows (one split across the format string and an argument);
an exception's traceback text is redacted as well. ``install`` puts it on the root logger's handlers, where
every process's records end up (the entrypoint configures logging once; uvicorn is told not to configure
its own handlers, so its records propagate there too).
"""

from __future__ import annotations

import logging
import re

REDACTED = "***"
SECRET_QUERY_PARAMETERS = ("ticket", "token", "access_token", "refresh_token")

_QUERY = re.compile(r"(?i)([?&;](?:" + "|".join(SECRET_QUERY_PARAMETERS) + r")=)[^&;#\s\"'<>]+")
_AUTHORIZATION = re.compile(
    r"(?i)(authorization['\"]?\s*[:=,]\s*(?:b?['\"])?(?:(?:bearer|basic|digest)\s+)?)[^'\"\r\n]+"
)
# A bearer token outside a header line (a client library's debug line): long enough to be no prose.
_BEARER = re.compile(r"\b(Bearer\s+)[A-Za-z0-9._~+/=-]{16,}")
_COOKIE_HEADER = re.compile(r"(?i)\b((?:set-)?cookie:[ \t]*)[^\r\n]+")
_COOKIE_PAIR = re.compile(r"(?i)(['\"](?:set-)?cookie['\"]\s*[,:]\s*b?['\"])[^'\"]*")


def redact(text: str) -> str:
    """``text`` with every bearer secret (see the module) replaced by ``***``; the rest untouched."""
    text = _QUERY.sub(rf"\1{REDACTED}", text)
    text = _AUTHORIZATION.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    text = _COOKIE_HEADER.sub(rf"\1{REDACTED}", text)
    return _COOKIE_PAIR.sub(rf"\1{REDACTED}", text)


def _redact_argument(arg: object) -> object:
    """A string argument redacted; any other kept as it is unless its text holds a secret (then its
    redacted text: the record's format must then take it with ``%s``, which every secret-bearing one does)."""
    if isinstance(arg, str):
        return redact(arg)
    if isinstance(arg, (int, float)) or arg is None:
        return arg
    text = str(arg)
    cleaned = redact(text)
    return arg if cleaned == text else cleaned


class RedactSecrets(logging.Filter):
    """Rewrites each record in place so that no formatter can show a secret; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_argument(a) for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: _redact_argument(v) for k, v in record.args.items()}
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler's own error path
            return True
        if redact(message) != message:
            record.msg, record.args = redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def install(logger: logging.Logger | None = None) -> RedactSecrets:
    """Put one ``RedactSecrets`` on every handler of ``logger`` (default: the root logger) that has none;
    returns the filter. Call it after the handlers exist (after ``logging.basicConfig``)."""
    target = logger or logging.getLogger()
    redaction = RedactSecrets()
    for handler in target.handlers:
        if not any(isinstance(f, RedactSecrets) for f in handler.filters):
            handler.addFilter(redaction)
    return redaction
