"""The remote enrichment backends against local servers that speak their protocols (tests/unit/llm_servers.py):
an OpenAI-compatible chat-completions endpoint and watsonx.ai (IAM token, chat, chat_stream)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from enrichment.backend import SUMMARY_RESTART, UnknownBackendError, backend_named
from enrichment.fallback import FallbackBackend, with_fallback
from enrichment.http_calls import RemoteCallError
from enrichment.local import LocalBackend
from enrichment.openai_backend import openai_backend
from enrichment.remote import RemoteBackend
from enrichment.watsonx_backend import watsonx_backend
from palaver.settings import Settings
from stack.cli import main
from tests.unit.enrichment_helpers import meeting
from tests.unit.llm_servers import SUMMARY_PIECES, WATSONX_KEY, WATSONX_TOKEN, FakeModelServer, Step, serving

OPENAI_KEY = "sk-test-4f3e2d1c0b9a8877"
TRANSCRIPT = meeting("Ann: The release is blocked on the flaky checkout test.",
                     "Bob: I'll fix the flaky checkout test by Friday, it's urgent.", "Ann: Great, thanks Bob.",
                     participants=("Ann Lee", "Bob Stone"))  # fmt: skip


class Sleeps(list[float]):
    """Stands in for time.sleep: records the waits asked for, waits for none."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


def settings(fake: FakeModelServer, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "enrichment_openai_base_url": fake.url + "/v1", "enrichment_openai_model": "test-model",
        "enrichment_openai_api_key": OPENAI_KEY, "enrichment_watsonx_url": fake.url,
        "enrichment_watsonx_iam_url": fake.url + "/identity/token", "enrichment_watsonx_api_key": WATSONX_KEY,
        "enrichment_watsonx_project_id": "proj-1", "enrichment_watsonx_model": "ibm/test",
        "enrichment_retries": 2, "enrichment_timeout_s": 5.0,
    }  # fmt: skip
    return Settings(**(values | overrides))


def remote(fake: FakeModelServer, sleeps: Sleeps, **overrides: Any) -> RemoteBackend:
    build = openai_backend if fake.kind == "openai" else watsonx_backend
    return build(settings(fake, **overrides), sleeps)


@pytest.fixture(params=["openai", "watsonx"])
def fake(request: pytest.FixtureRequest) -> Iterator[FakeModelServer]:
    with serving(request.param) as server:
        yield server


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_good_run_streams_the_summary_in_order_and_parses_the_structured_answer(fake: FakeModelServer) -> None:
    chunks: list[str] = []
    result = remote(fake, Sleeps()).enrich(TRANSCRIPT, chunks.append)
    assert chunks == SUMMARY_PIECES and "".join(chunks) == result.summary.detailed
    assert result.backend == fake.kind and result.fallback is None
    [item] = result.action_items
    assert (item.description, item.assignee, item.due_date.isoformat() if item.due_date else None, item.priority) == (
        "Fix the flaky checkout test", "Bob Stone", "2026-03-06", "high")  # fmt: skip
    assert item.dialogue_ids == ("d1",)  # turn 99 is not in the transcript
    assert result.keywords == ("flaky checkout test", "release")  # a participant's name is no keyword
    assert [(t.title, t.dialogue_ids) for t in result.agenda] == [("Checkout test", ("d0", "d1", "d2"))]
    assert result.summary.brief.splitlines()[0] == "- The release is blocked on the flaky checkout test"
    assert set(result.metrics.speakers) == {"Ann", "Bob"} and result.mood.overall.label in ("positive", "neutral")
    structured, streamed = fake.chat_requests()
    schema = structured.body["response_format"]
    assert schema["type"] == "json_schema" and schema["json_schema"]["strict"] is True
    item_schema = schema["json_schema"]["schema"]["properties"]["action_items"]["items"]
    assert item_schema["properties"]["assignee"]["enum"] == ["Ann Lee", "Bob Stone", ""]
    assert "2026-03-04 (Wednesday)" in structured.body["messages"][1]["content"]
    if fake.kind == "openai":
        assert structured.path == "/v1/chat/completions" and streamed.body["stream"] is True
        assert structured.body["model"] == "test-model"
    else:
        assert structured.path.startswith("/ml/v1/text/chat?version=") and streamed.path.startswith("/ml/v1/text/chat_stream?")
        assert (structured.body["model_id"], structured.body["project_id"]) == ("ibm/test", "proj-1")
        assert fake.token_requests == 1  # the IAM token is fetched once and reused


def test_the_key_is_sent_as_a_bearer_header_and_never_logged(fake: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:
    fake.script = [Step(status=500, body='{"error": "boom"}'), Step(status=429, headers={"Retry-After": "1"})]
    fake.script += [Step(content="not json at all")]
    caplog.set_level(logging.DEBUG)
    result = with_fallback(remote(fake, Sleeps())).enrich(TRANSCRIPT)
    bearer = OPENAI_KEY if fake.kind == "openai" else WATSONX_TOKEN
    assert {r.headers.get("Authorization") for r in fake.chat_requests()} == {f"Bearer {bearer}"}
    assert caplog.text and "retrying" in caplog.text
    for secret in (OPENAI_KEY, WATSONX_KEY, WATSONX_TOKEN):
        assert secret not in caplog.text and secret not in json.dumps(result.to_json())


def test_a_secret_echoed_by_the_server_is_redacted(fake: FakeModelServer, caplog: pytest.LogCaptureFixture) -> None:
    echoed = OPENAI_KEY if fake.kind == "openai" else f"{WATSONX_KEY} {WATSONX_TOKEN}"
    fake.script = [Step(status=403, body=f'{{"error": "not allowed: {echoed}"}}')]
    caplog.set_level(logging.DEBUG)
    result = with_fallback(remote(fake, Sleeps())).enrich(TRANSCRIPT)
    assert result.fallback is not None and "[secret]" in result.fallback.reason and "403" in caplog.text
    for secret in (OPENAI_KEY, WATSONX_KEY, WATSONX_TOKEN):
        assert secret not in caplog.text and secret not in result.fallback.reason


def test_without_a_key_no_authorization_header_is_sent() -> None:
    with serving("openai") as fake:
        remote(fake, Sleeps(), enrichment_openai_api_key=None).enrich(TRANSCRIPT)
        assert all("Authorization" not in r.headers for r in fake.requests)


def test_429_waits_for_retry_after_then_succeeds(fake: FakeModelServer) -> None:
    before = sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="rate_limited")
    fake.script = [Step(status=429, headers={"Retry-After": "7"}, body='{"error": "slow down"}'),
                   Step(status=429, headers={"Retry-After": "3600"})]  # fmt: skip
    sleeps = Sleeps()
    result = remote(fake, sleeps, enrichment_retry_max_wait_s=20).enrich(TRANSCRIPT)
    assert sleeps == [7.0, 20.0]  # the server's wait, bounded by the setting
    assert result.fallback is None and result.action_items[0].assignee == "Bob Stone"
    assert sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="rate_limited") == before + 2


def test_malformed_json_is_retried_once_then_an_error(fake: FakeModelServer) -> None:
    fake.script = [Step(content="{not json"), Step(content='{"brief": []}')]
    with pytest.raises(RemoteCallError) as caught:
        remote(fake, Sleeps()).enrich(TRANSCRIPT)
    assert caught.value.reason == "invalid_output" and "not the schema" in str(caught.value)
    fake.script = [Step(content="{not json")]
    assert remote(fake, Sleeps()).enrich(TRANSCRIPT).fallback is None  # one bad answer, then a good one


def test_a_date_that_is_not_iso_is_invalid_output(fake: FakeModelServer) -> None:
    from tests.unit.llm_servers import good_extraction

    bad = good_extraction()
    bad["action_items"][0]["due_date"] = "next Friday"
    fake.script = [Step(content=json.dumps(bad))] * 2
    result = with_fallback(remote(fake, Sleeps())).enrich(TRANSCRIPT)
    assert result.fallback is not None and "is not YYYY-MM-DD" in result.fallback.reason


def test_a_timeout_is_retried_then_falls_back(fake: FakeModelServer) -> None:
    before = sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="timeout")
    fake.script = [Step(delay_s=1.0), Step(delay_s=1.0)]
    result = with_fallback(remote(fake, Sleeps(), enrichment_timeout_s=0.2, enrichment_retries=1)).enrich(TRANSCRIPT)
    assert result.backend == "local" and result.fallback is not None
    assert result.fallback.backend == fake.kind and result.fallback.reason.startswith("timeout")
    assert sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="timeout") == before + 2


def test_persistent_5xx_falls_back_to_local_with_the_field_set_and_counted(fake: FakeModelServer) -> None:
    errors = sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="server_error")
    fallbacks = sample("palaver_enrichment_fallbacks_total", backend=fake.kind)
    fake.script = [Step(status=503, body='{"error": "overloaded"}')] * 3
    sleeps = Sleeps()
    chunks: list[str] = []
    result = with_fallback(remote(fake, sleeps)).enrich(TRANSCRIPT, chunks.append)
    assert sleeps == [0.5, 1.0]  # two retries, backing off
    assert result.backend == "local" and result.fallback is not None
    assert result.to_json()["fallback"] == {"backend": fake.kind, "reason": result.fallback.reason}
    assert "server_error" in result.fallback.reason and "503" in result.fallback.reason
    assert SUMMARY_RESTART not in chunks and "".join(chunks) == result.summary.detailed  # nothing was streamed before
    assert result.model_copy(update={"fallback": None}) == LocalBackend().enrich(TRANSCRIPT)  # complete, local's own
    assert sample("palaver_enrichment_backend_errors_total", backend=fake.kind, reason="server_error") == errors + 3
    assert sample("palaver_enrichment_fallbacks_total", backend=fake.kind) == fallbacks + 1


def test_a_client_error_is_not_retried(fake: FakeModelServer) -> None:
    fake.script = [Step(status=404, body='{"error": "no such model"}')]
    sleeps = Sleeps()
    with pytest.raises(RemoteCallError, match="HTTP 404") as caught:
        remote(fake, sleeps).enrich(TRANSCRIPT)
    assert caught.value.reason == "client_error" and sleeps == []


def test_a_stream_that_breaks_midway_restarts_the_summary_with_the_local_one(fake: FakeModelServer) -> None:
    fake.script = [Step(), Step(pieces=SUMMARY_PIECES[:2], finish=False)]
    chunks: list[str] = []
    result = with_fallback(remote(fake, Sleeps())).enrich(TRANSCRIPT, chunks.append)
    restart = chunks.index(SUMMARY_RESTART)
    assert chunks[:restart] == SUMMARY_PIECES[:2]
    assert "".join(chunks[restart + 1:]) == result.summary.detailed and result.backend == "local"
    assert result.fallback is not None and "before the answer was finished" in result.fallback.reason
    assert len(fake.chat_requests()) == 2  # a stream already handed on is not asked again


def test_a_long_meeting_is_read_in_parts_and_reduced(fake: FakeModelServer) -> None:
    turns = [f"{'Ann' if i % 2 else 'Bob'}: Point number {i} is about the checkout test and the release plan." for i in range(60)]
    long_meeting = meeting(*turns)
    result = remote(fake, Sleeps(), enrichment_max_chars=2000).enrich(long_meeting)
    requests = fake.chat_requests()
    maps = [r for r in requests if r.body.get("response_format", {}).get("json_schema", {}).get("name") == "meeting_notes"]
    reduces = [r for r in requests if r.body.get("response_format", {}).get("json_schema", {}).get("name") == "meeting_brief"]
    assert len(maps) >= 3 and len(reduces) == 1
    said = "\n".join(r.body["messages"][1]["content"] for r in maps)
    assert all(f"Point number {i} " in said for i in range(60))  # every turn was read, none cut
    assert all(len(r.body["messages"][1]["content"]) < 2000 + 2000 for r in maps)
    assert f"part 1 of {len(maps)}" in maps[0].body["messages"][1]["content"]
    assert result.summary.brief == "- Release blocked on the flaky checkout test"


def test_watsonx_fetches_a_new_token_after_a_401() -> None:
    with serving("watsonx") as fake:
        backend = remote(fake, Sleeps())
        backend.enrich(TRANSCRIPT)
        fake.script = [Step(status=401, body='{"errors": [{"code": "authentication_token_expired"}]}')]
        assert backend.enrich(TRANSCRIPT).fallback is None
        assert fake.token_requests == 2


def test_watsonx_with_a_wrong_key_fails_clearly() -> None:
    with serving("watsonx") as fake:
        with pytest.raises(RemoteCallError, match="IAM token: HTTP 400") as caught:
            remote(fake, Sleeps(), enrichment_watsonx_api_key="wrong").enrich(TRANSCRIPT)
        assert caught.value.reason == "client_error"


def test_the_registry_builds_remote_backends_from_settings_with_fallback() -> None:
    with serving("openai") as fake:
        backend = backend_named("openai", settings(fake))
        assert isinstance(backend, FallbackBackend) and backend.name == "openai"
        assert isinstance(backend_named("openai", settings(fake, enrichment_fallback=False)), RemoteBackend)
    with pytest.raises(UnknownBackendError, match="needs the settings"):
        backend_named("openai")
    with pytest.raises(UnknownBackendError, match="PALAVER_ENRICHMENT_WATSONX_PROJECT_ID"):
        backend_named("watsonx", Settings(enrichment_watsonx_api_key="k", enrichment_watsonx_project_id=None))


def test_palaver_enrich_with_a_remote_backend(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    path = tmp_path / "m.txt"
    path.write_text("Ann Lee: The release is blocked on the flaky checkout test.\n"
                    "Bob Stone: I'll fix the flaky checkout test by Friday, it's urgent.\nAnn Lee: Great, thanks Bob.\n")  # fmt: skip
    with serving("openai") as fake:
        monkeypatch.setenv("PALAVER_ENRICHMENT_OPENAI_BASE_URL", fake.url + "/v1")
        monkeypatch.setenv("PALAVER_ENRICHMENT_OPENAI_API_KEY", OPENAI_KEY)
        assert main(["enrich", str(path), "--backend", "openai", "--meeting-date", "2026-03-04"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["backend"], out["fallback"]) == ("openai", None)
    assert (out["action_items"][0]["assignee"], out["action_items"][0]["due_date"]) == ("Bob Stone", "2026-03-06")
    assert out["summary"]["detailed"] == "".join(SUMMARY_PIECES)


def test_the_benchmark_measures_a_remote_backend_and_counts_its_fallbacks(tmp_path: Path) -> None:
    from bench.enrichment import MEETINGS, run

    (tmp_path / "standup.json").write_text((MEETINGS / "standup.json").read_text())
    with serving("openai") as fake:
        results = run("openai", tmp_path, settings(fake))
        assert results["backend"] == "openai" and results["fallbacks"] == 0
        assert results["meetings"]["standup"]["predicted"] == 1  # the fake server's one task
        fake.script = [Step(status=503)] * 3
        failed = run("openai", tmp_path, settings(fake))
    assert failed["fallbacks"] == 1 and "503" in failed["meetings"]["standup"]["fallback"]["reason"]
