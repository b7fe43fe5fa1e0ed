"""Local HTTP servers that speak the remote enrichment backends' protocols, for the backends' tests: an
OpenAI-compatible chat-completions endpoint (JSON answers, server-sent event streams ending with [DONE])
and watsonx.ai (IAM token endpoint; /ml/v1/text/chat and /chat_stream, events without [DONE]).

Each server answers from a script: a list of steps taken one per request, in order; with the script empty
it answers well (``good_extraction`` for a structured request, ``good_corrections`` for an auto-correct
one, ``SUMMARY_PIECES`` streamed for a streamed one). Every request is recorded (path, headers, JSON or form body)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SUMMARY_PIECES = ["### Checkout test\n", "- **Ann:** the release is blocked on the flaky checkout test.\n",
                  "- **Bob:** will fix it by Friday.\n\n", "### Action items\n- [ ] Fix the flaky checkout test (Bob, due 2026-03-06)"]  # fmt: skip


def good_extraction() -> dict[str, Any]:
    """A valid answer for the three-turn meeting of the tests (the assignee in other case, a name to drop
    from the keywords)."""
    return {
        "brief": ["The release is blocked on the flaky checkout test", "Bob fixes it by Friday"],
        "notes": ["Release blocked on the flaky checkout test.", "Bob will fix it by Friday."],
        "action_items": [{"description": "Fix the flaky checkout test", "assignee": "bob", "start_date": None,
                          "due_date": "2026-03-06", "priority": "high", "turns": [1, 99]}],
        "keywords": ["flaky checkout test", "Bob", "release"],
        "topics": [{"title": "Checkout test", "first_turn": 0, "last_turn": 2, "agenda_item": None}],
    }  # fmt: skip


def sent_dialogues(body: dict[str, Any]) -> list[dict[str, str]]:
    """The dialogues (id, speaker, text) an auto-correct request sent: its prompt's JSON lines."""
    prompt = body["messages"][1]["content"]
    return [json.loads(line) for line in prompt.split("one JSON object per line:\n", 1)[1].splitlines()]


def good_corrections(body: dict[str, Any]) -> dict[str, str]:
    """A valid auto-correct answer to the request ``body``: each text with a capital first letter and a
    final full stop, its words kept."""
    out = {}
    for dialogue in sent_dialogues(body):
        text = dialogue["text"].strip()
        out[dialogue["id"]] = (text[:1].upper() + text[1:]).rstrip(".") + "."
    return out


@dataclass
class Step:
    """One scripted answer: ``status`` with ``headers`` and ``body``; ``content`` as a chat completion's
    text; ``pieces`` streamed (``finish``: send a finish_reason and [DONE]; else the connection just closes);
    ``delay_s`` before answering."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    content: str | None = None
    pieces: list[str] | None = None
    finish: bool = True
    delay_s: float = 0.0


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: Any


class FakeModelServer:
    """``kind`` "openai" or "watsonx"."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.script: list[Step] = []
        self.requests: list[Recorded] = []
        self.token_requests = 0
        self.lock = threading.Lock()
        self.url = ""

    def next_step(self) -> Step | None:
        with self.lock:
            return self.script.pop(0) if self.script else None

    def chat_requests(self) -> list[Recorded]:
        return [r for r in self.requests if "/token" not in r.path]


def _handler(server: FakeModelServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # the test output stays quiet
            pass

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
            is_form = self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
            body = dict(urllib.parse.parse_qsl(raw)) if is_form else json.loads(raw or "null")
            with server.lock:
                server.requests.append(Recorded(self.path, dict(self.headers), body))
            if self.path.endswith("/identity/token"):
                self._token(body)
                return
            step = server.next_step() or Step()
            if step.delay_s:
                time.sleep(step.delay_s)
            if step.status != 200 or step.body is not None:
                self._send(step.status, step.body or "{}", step.headers)
                return
            stream = "chat_stream" in self.path if server.kind == "watsonx" else bool(body.get("stream"))
            if stream:
                self._stream(step.pieces if step.pieces is not None else SUMMARY_PIECES, step.finish)
                return
            content = step.content if step.content is not None else json.dumps(_answer_for(body))
            self._send(200, json.dumps({"id": "c1", "object": "chat.completion", "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": content}}]}))  # fmt: skip

        def _token(self, form: dict[str, str]) -> None:
            with server.lock:
                server.token_requests += 1
            if form.get("grant_type") != "urn:ibm:params:oauth:grant-type:apikey" or form.get("apikey") != WATSONX_KEY:
                self._send(400, json.dumps({"errorCode": "BXNIM0415E", "errorMessage": "Provided API key could not be found"}))
                return
            self._send(200, json.dumps({"access_token": WATSONX_TOKEN, "refresh_token": "not_supported",
                                        "token_type": "Bearer", "expires_in": 3600,
                                        "expiration": int(time.time()) + 3600}))  # fmt: skip

        def _send(self, status: int, text: str, headers: dict[str, str] | None = None) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, pieces: list[str], finish: bool) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            chunks = [{"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]}]
            chunks += [{"choices": [{"index": 0, "delta": {"content": p}, "finish_reason": None}]} for p in pieces]
            if finish:
                chunks.append({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": "stop"}]})
            for n, chunk in enumerate(chunks, start=1):
                prefix = f"id: {n}\nevent: message\n" if server.kind == "watsonx" else ""
                self.wfile.write(f"{prefix}data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            if finish and server.kind == "openai":
                self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


WATSONX_KEY = "ibm-api-key-0123456789abcdef"
WATSONX_TOKEN = "iam-access-token-zyxwvu"


def _answer_for(body: dict[str, Any]) -> dict[str, Any]:
    name = body["response_format"]["json_schema"]["name"]
    if name == "dialogue_corrections":
        return good_corrections(body)
    if name == "meeting_brief":
        return {"brief": ["Release blocked on the flaky checkout test"], "keywords": ["checkout test", "release"]}
    return good_extraction()


@contextmanager
def serving(kind: str) -> Iterator[FakeModelServer]:
    """A FakeModelServer of ``kind`` on a free port of 127.0.0.1, stopped on exit."""
    fake = FakeModelServer(kind)
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    httpd.daemon_threads = True
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
