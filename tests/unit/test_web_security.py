"""The web process's responses: security headers on pages, JSON and errors; the docs page served locally
with no inline script; /docs and /metrics restricted by setting; /healthz without exception text."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.testclient import TestClient

from palaver.settings import Settings
from stack.api_docs import SWAGGER_UI_FILES
from stack.metrics_access import is_loopback, metrics_host
from stack.web import create_app

STRICT = {
    "default-src": "'self'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data: blob:",
    "object-src": "'none'", "base-uri": "'none'", "frame-ancestors": "'none'", "form-action": "'self'",
}  # fmt: skip


def policy(response: Any) -> dict[str, str]:
    directives = (d.strip().split(" ", 1) for d in response.headers["content-security-policy"].split(";"))
    return {name: value for name, value in directives}


def client(settings: Settings | None = None, **options: Any) -> TestClient:
    """The api's app without its lifespan (no Kafka, no store): routes that need neither answer."""
    app = create_app(settings or Settings(), {"api"})

    @app.get("/boom", include_in_schema=False)
    async def boom() -> None:
        raise RuntimeError("an unexpected failure")

    return TestClient(app, raise_server_exceptions=False, **options)


def assert_secured(response: Any, https: bool = False) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["referrer-policy"] == "strict-origin-when-cross-origin"
    assert ("strict-transport-security" in response.headers) == https
    found = policy(response)
    for name, value in STRICT.items():
        if name != "style-src":  # the docs page alone loosens styles
            assert found[name] == value, (name, found)
    assert found["connect-src"].startswith("'self'")
    assert not re.search(r"https?://", response.headers["content-security-policy"]), "no third-party origin"


@pytest.mark.parametrize("https", [False, True])
def test_html_json_and_error_responses_carry_the_headers(https: bool) -> None:
    http = client(base_url="https://testserver" if https else "http://testserver")
    answers = {
        "html": http.get("/docs"),
        "json": http.get("/openapi.json"),
        "health": http.get("/healthz"),
        "404": http.get("/v1/nothing-here"),
        "422": http.post("/v1/users", json={"username": "x"}),  # anonymous callers may register: validation answers
        "500": http.get("/boom"),
    }
    assert {k: a.status_code for k, a in answers.items()} == {"html": 200, "json": 200, "health": 200, "404": 404,
                                                             "422": 422, "500": 500}  # fmt: skip
    assert answers["html"].headers["content-type"].startswith("text/html")
    assert answers["json"].headers["content-type"] == "application/json"
    for kind, answer in answers.items():
        assert_secured(answer, https)
        if kind != "html":
            assert policy(answer) == {**STRICT, "connect-src": policy(answer)["connect-src"]}, kind
    if https:
        assert answers["json"].headers["strict-transport-security"] == "max-age=31536000"


def test_connect_src_names_the_hosts_websocket_origin_only_when_the_host_is_plain() -> None:
    assert policy(client().get("/healthz"))["connect-src"] == "'self' ws://testserver"
    https = client(base_url="https://palaver.example:8443").get("/healthz")
    assert policy(https)["connect-src"] == "'self' wss://palaver.example:8443"
    forged = client().get("/healthz", headers={"Host": "evil.example; script-src *"})
    assert policy(forged)["connect-src"] == "'self'" and "evil" not in forged.headers["content-security-policy"]


def test_the_docs_page_runs_no_inline_script_and_loads_nothing_from_elsewhere() -> None:
    http = client()
    page = http.get("/docs")
    scripts = re.findall(r"<script([^>]*)>(.*?)</script>", page.text, re.S)
    assert scripts and all('src="/docs/' in attrs and not body.strip() for attrs, body in scripts), scripts
    assert not re.search(r"(?:src|href)=\"(?:https?:)?//", page.text), "every file comes from this server"
    assert 'data-openapi-url="/openapi.json"' in page.text
    assert policy(page)["style-src"] == "'self' 'unsafe-inline'", "Swagger UI sets styles at run time"
    for name in SWAGGER_UI_FILES:
        asset = http.get(f"/docs/swagger-ui/{name}")
        assert asset.status_code == 200 and len(asset.content) > 1000, name
        assert_secured(asset)
    bundle = http.get("/docs/swagger-ui/swagger-ui-bundle.js").text
    assert "SwaggerUIBundle" in bundle and '"5.' in bundle, "Swagger UI 5 reads OpenAPI 3.1"
    starter = http.get("/docs/api-docs.js")
    assert starter.status_code == 200 and "javascript" in starter.headers["content-type"]
    assert "SwaggerUIBundle(" in starter.text and "dataset.openapiUrl" in starter.text
    assert http.get("/docs/swagger-ui/redoc.standalone.js").status_code == 404, "only the page's own files"
    assert http.get("/docs/swagger-ui/..%2F__init__.py").status_code == 404
    assert http.get("/redoc").status_code == 404 and http.get("/docs/oauth2-redirect").status_code == 404


def test_docs_off_serves_neither_the_page_nor_the_openapi_document(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PALAVER_DOCS", "off")
    http = client(Settings())
    for path in ("/docs", "/openapi.json", "/docs/api-docs.js", "/docs/swagger-ui/swagger-ui.css"):
        assert http.get(path).status_code == 404, path
    assert http.get("/healthz").status_code == 200


@pytest.mark.parametrize(("access", "peer", "status"), [
    ("open", "203.0.113.9", 200), ("local", "127.0.0.1", 200), ("local", "::1", 200),
    ("local", "203.0.113.9", 403), ("local", "testclient", 403), ("off", "127.0.0.1", 404),
])  # fmt: skip
def test_metrics_access(monkeypatch: pytest.MonkeyPatch, access: str, peer: str, status: int) -> None:
    monkeypatch.setenv("PALAVER_METRICS_ACCESS", access)
    answer = client(Settings(), client=(peer, 40000)).get("/metrics/")
    assert answer.status_code == status, answer.text
    assert_secured(answer)
    if status == 200:
        assert "palaver_" in answer.text
    if status == 403:
        assert "PALAVER_METRICS_ACCESS=local" in answer.text


def test_metrics_of_processes_without_http_follow_the_setting() -> None:
    assert metrics_host(Settings(metrics_access="open"), "0.0.0.0") == "0.0.0.0"
    assert metrics_host(Settings(metrics_access="local"), "0.0.0.0") == "127.0.0.1"
    assert metrics_host(Settings(metrics_access="off"), "0.0.0.0") is None


def test_loopback_addresses() -> None:
    assert all(is_loopback(a) for a in ("127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"))
    assert not any(is_loopback(a) for a in ("10.0.0.1", "::ffff:10.0.0.1", "localhost", "", None, "testclient"))
