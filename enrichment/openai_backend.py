"""The ``openai`` backend: any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, the
llama.cpp server). POST ``{base_url}/chat/completions`` with a bearer key when one is set; structured
answers through ``response_format: {"type": "json_schema", ...}``, the summary through ``"stream": true``
(server-sent events ending with ``data: [DONE]``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import SecretStr

from enrichment.chat_http import ChatCompletions
from enrichment.http_calls import RetryPolicy
from enrichment.remote import RemoteBackend

if TYPE_CHECKING:
    from palaver.settings import Settings


@dataclass(frozen=True)
class OpenAIConfig:
    base_url: str
    model: str
    api_key: SecretStr | None = None
    timeout_s: float = 120.0


class OpenAIChat(ChatCompletions):
    name = "openai"

    def __init__(self, config: OpenAIConfig, client: httpx.Client | None = None) -> None:
        super().__init__(client or httpx.Client(timeout=config.timeout_s))
        self.config = config

    def url(self, stream: bool) -> str:
        return self.config.base_url.rstrip("/") + "/chat/completions"

    def headers(self) -> dict[str, str]:
        key = self.config.api_key.get_secret_value() if self.config.api_key else ""
        return {"Authorization": f"Bearer {key}"} if key else {}

    def secrets(self) -> tuple[str, ...]:
        return (self.config.api_key.get_secret_value(),) if self.config.api_key else ()

    def body(self, messages: list[dict[str, str]], stream: bool) -> dict[str, Any]:
        return {"model": self.config.model, "messages": messages, "stream": stream}


def openai_backend(settings: Settings, sleep: Any = None) -> RemoteBackend:
    """The backend as the settings configure it (PALAVER_ENRICHMENT_OPENAI_*, PALAVER_ENRICHMENT_*)."""
    config = OpenAIConfig(
        base_url=settings.enrichment_openai_base_url, model=settings.enrichment_openai_model,
        api_key=settings.enrichment_openai_api_key, timeout_s=settings.enrichment_timeout_s,
    )  # fmt: skip
    return RemoteBackend(OpenAIChat(config), settings.enrichment_max_chars, retry_policy(settings), sleep)


def retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(retries=settings.enrichment_retries, max_wait_s=settings.enrichment_retry_max_wait_s)
