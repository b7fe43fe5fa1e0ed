"""A chat-completions request over HTTP, as the OpenAI API and watsonx.ai's chat API both shape it: messages
in; a JSON body with ``choices[0].message.content`` back, or (streamed) server-sent events whose
``choices[0].delta.content`` are the text's pieces. Subclasses say where to send it, with which headers and
what else goes in the body. One call is one attempt; retries are the caller's (http_calls.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx

from enrichment.http_calls import RemoteCallError, check_status, server_sent_events


class ChatCompletions:
    """One endpoint of a chat-completions API. ``name`` is the backend's, for logs and metrics."""

    name = "chat"

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def url(self, stream: bool) -> str:
        raise NotImplementedError

    def headers(self) -> dict[str, str]:
        return {}

    def secrets(self) -> tuple[str, ...]:
        """What must never appear in an error message (keys, tokens): check_status redacts it."""
        return ()

    def body(self, messages: list[dict[str, str]], stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def messages(system: str, user: str) -> list[dict[str, str]]:
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    def complete_json(self, system: str, user: str, schema_name: str, schema: dict[str, Any]) -> str:
        """The answer's text, asked for as JSON following ``schema`` (structured output). Raises
        RemoteCallError (or httpx's transport errors)."""
        body = self.body(self.messages(system, user), stream=False)
        body["response_format"] = {"type": "json_schema",
                                   "json_schema": {"name": schema_name, "strict": True, "schema": schema}}  # fmt: skip
        response = self.client.post(self.url(stream=False), json=body, headers=self.headers())
        check_status(response, self.secrets())
        try:
            choice = response.json()["choices"][0]
            content, finish_reason = choice["message"]["content"], choice.get("finish_reason")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise RemoteCallError("invalid_output", "the response is not a chat completion") from None
        if finish_reason == "length":
            raise RemoteCallError("invalid_output", "the answer was cut at the model's output limit")
        if not isinstance(content, str):
            raise RemoteCallError("invalid_output", "the chat completion has no text")
        return content

    def stream_text(self, system: str, user: str, on_delta: Callable[[str], None]) -> None:
        """Streams the answer: each non-empty piece of text goes to ``on_delta`` as it arrives. The stream must
        end with ``data: [DONE]`` or a choice's ``finish_reason``. Raises RemoteCallError (or httpx's transport
        errors), also for an answer cut at the output limit or a stream that ends before it is finished."""
        body = self.body(self.messages(system, user), stream=True)
        with self.client.stream("POST", self.url(stream=True), json=body, headers=self.headers()) as response:
            if response.status_code >= 400:
                response.read()
                check_status(response, self.secrets())
            finished = False
            for event in server_sent_events(response.iter_lines()):
                if event.data.strip() == "[DONE]":
                    return
                try:
                    chunk = json.loads(event.data)
                except json.JSONDecodeError:
                    raise RemoteCallError("invalid_output", "a streamed event is not JSON") from None
                if event.event == "error" or (isinstance(chunk, dict) and ("error" in chunk or "errors" in chunk)):
                    raise RemoteCallError("server_error", f"the stream reported an error: {event.data[:200]}")
                for choice in chunk.get("choices") or [] if isinstance(chunk, dict) else []:
                    if not isinstance(choice, dict) or not isinstance(choice.get("delta") or {}, dict):
                        raise RemoteCallError("invalid_output", "a streamed event is not a chat completion chunk")
                    piece = (choice.get("delta") or {}).get("content")
                    if isinstance(piece, str) and piece:
                        on_delta(piece)
                    if choice.get("finish_reason") == "length":
                        raise RemoteCallError("invalid_output", "the summary was cut at the model's output limit")
                    finished = finished or bool(choice.get("finish_reason"))
            if not finished:  # the connection closed before the model said it was done
                raise RemoteCallError("connection", "the stream ended before the answer was finished")
