"""The ``watsonx`` backend: IBM watsonx.ai's chat API.

- Auth: the IBM Cloud API key is exchanged for an IAM access token, POST ``{iam_url}`` with the form
  ``grant_type=urn:ibm:params:oauth:grant-type:apikey&apikey=KEY``; the answer's ``access_token`` is sent as
  a bearer token until a minute before its ``expiration`` (or ``expires_in``), then fetched again. A 401
  from the chat API drops the token, so the retry fetches a new one.
- Chat: POST ``{url}/ml/v1/text/chat?version=DATE`` with ``model_id``, ``project_id``, ``messages``,
  ``max_completion_tokens`` (and ``response_format`` for structured answers); the answer is
  ``choices[0].message.content``. Streamed: ``/ml/v1/text/chat_stream``, server-sent events (``event:
  message``) whose ``choices[0].delta.content`` are the pieces."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from enrichment.chat_http import ChatCompletions
from enrichment.http_calls import RemoteCallError, check_status
from enrichment.openai_backend import retry_policy
from enrichment.remote import RemoteBackend
from palaver.metrics import ENRICHMENT_REQUEST_SECONDS

if TYPE_CHECKING:
    from palaver.settings import Settings

TOKEN_MARGIN_S = 60.0  # a token this close to its expiry is fetched again


@dataclass(frozen=True)
class WatsonxConfig:
    url: str
    iam_url: str
    api_key: SecretStr
    project_id: str
    model: str
    version: str
    max_tokens: int = 4096
    timeout_s: float = 120.0


class WatsonxChat(ChatCompletions):
    name = "watsonx"

    def __init__(self, config: WatsonxConfig, client: httpx.Client | None = None) -> None:
        super().__init__(client or httpx.Client(timeout=config.timeout_s))
        self.config = config
        self._token: tuple[str, float] | None = None  # (token, time.time() after which it is fetched again)
        self._lock = threading.Lock()

    def url(self, stream: bool) -> str:
        path = "chat_stream" if stream else "chat"
        return f"{self.config.url.rstrip('/')}/ml/v1/text/{path}?version={self.config.version}"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def secrets(self) -> tuple[str, ...]:
        return (self.config.api_key.get_secret_value(), self._token[0] if self._token else "")

    def body(self, messages: list[dict[str, str]], stream: bool) -> dict[str, Any]:
        return {"model_id": self.config.model, "project_id": self.config.project_id, "messages": messages,
                "max_completion_tokens": self.config.max_tokens}  # fmt: skip

    def token(self) -> str:
        """A valid IAM access token, fetched when there is none or it is about to expire."""
        with self._lock:
            if self._token is not None and time.time() < self._token[1]:
                return self._token[0]
            started = time.perf_counter()
            try:
                response = self.client.post(
                    self.config.iam_url, headers={"Accept": "application/json"},
                    data={"grant_type": "urn:ibm:params:oauth:grant-type:apikey",
                          "apikey": self.config.api_key.get_secret_value()},
                )  # fmt: skip
            finally:
                ENRICHMENT_REQUEST_SECONDS.labels(self.name, "token").observe(time.perf_counter() - started)
            if response.status_code >= 400:
                raise _iam_error(response, (self.config.api_key.get_secret_value(),))
            try:
                answer = response.json()
                token = answer["access_token"]
                expires = float(answer.get("expiration") or time.time() + float(answer.get("expires_in") or 3600))
            except (ValueError, KeyError, TypeError):
                raise RemoteCallError("invalid_output", "the IAM answer has no access_token") from None
            self._token = (str(token), expires - TOKEN_MARGIN_S)
            return self._token[0]

    def complete_json(self, system: str, user: str, schema_name: str, schema: dict[str, Any]) -> str:
        parent = super()
        return self._dropping_token_on_401(lambda: parent.complete_json(system, user, schema_name, schema))

    def stream_text(self, system: str, user: str, on_delta: Any) -> None:
        parent = super()
        self._dropping_token_on_401(lambda: parent.stream_text(system, user, on_delta))

    def _dropping_token_on_401(self, call: Any) -> Any:
        try:
            return call()
        except RemoteCallError as exc:
            if exc.reason == "client_error" and str(exc).startswith("HTTP 401") and self._token is not None:
                self._token = None  # expired or revoked: the retry fetches a new one
                exc.retryable = True
            raise


def _iam_error(response: httpx.Response, secrets: tuple[str, ...]) -> RemoteCallError:
    try:
        check_status(response, secrets)
    except RemoteCallError as exc:
        return RemoteCallError(exc.reason, f"IAM token: {exc}", retry_after_s=exc.retry_after_s)
    return RemoteCallError("client_error", "IAM token: unexpected answer")


def watsonx_backend(settings: Settings, sleep: Any = None) -> RemoteBackend:
    """The backend as the settings configure it (PALAVER_ENRICHMENT_WATSONX_*, PALAVER_ENRICHMENT_*)."""
    from enrichment.backend import UnknownBackendError

    key, project = settings.enrichment_watsonx_api_key, settings.enrichment_watsonx_project_id
    missing = [name for name, value in (("PALAVER_ENRICHMENT_WATSONX_API_KEY", key),
                                        ("PALAVER_ENRICHMENT_WATSONX_PROJECT_ID", project)) if not value]  # fmt: skip
    if missing or key is None or project is None:
        raise UnknownBackendError(f"the watsonx backend needs {' and '.join(missing)}")
    config = WatsonxConfig(
        url=settings.enrichment_watsonx_url, iam_url=settings.enrichment_watsonx_iam_url, api_key=key,
        project_id=project, model=settings.enrichment_watsonx_model, version=settings.enrichment_watsonx_version,
        max_tokens=settings.enrichment_watsonx_max_tokens, timeout_s=settings.enrichment_timeout_s,
    )  # fmt: skip
    return RemoteBackend(WatsonxChat(config), settings.enrichment_max_chars, retry_policy(settings), sleep)
