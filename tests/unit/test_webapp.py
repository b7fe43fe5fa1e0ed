"""The web app's shell and files as the API serves them (no broker, no store: the app without its lifespan)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from api.webapp import ASSETS, shell_page
from palaver.settings import Settings
from stack.security_headers import content_security_policy
from stack.web import create_app


def client() -> TestClient:
    return TestClient(create_app(Settings(), {"api"}), raise_server_exceptions=False)


def test_every_page_path_answers_the_shell_with_the_strict_policy() -> None:
    http = client()
    for path in ("/", "/signin", "/register", "/join", "/search", "/meetings/mtg_1", "/meetings/mtg_1/review"):
        answer = http.get(path)
        assert answer.status_code == 200, path
        assert answer.headers["content-type"].startswith("text/html")
        assert '<script type="module" src="/app/main.js"></script>' in answer.text
        assert "script-src 'self';" in answer.headers["content-security-policy"]
        assert "<script>" not in answer.text  # no inline script: the policy would refuse it


def test_assets_are_only_the_files_of_the_folder_with_their_types() -> None:
    http = client()
    assert {"main.js", "mic-worklet.js", "app.css", "index.html"} <= ASSETS
    assert http.get("/app/main.js").headers["content-type"].startswith("text/javascript")
    assert http.get("/app/app.css").headers["content-type"].startswith("text/css")
    for name in ("nothing.js", "..%2F__init__.py", "%2e%2e%2fapi.js", "__init__.py"):
        assert http.get(f"/app/{name}").status_code == 404, name


def test_the_shell_names_picture_origins_escaped() -> None:
    page = shell_page(("https://avatars.example.com", 'https://x"><script>'))
    assert 'content="https://avatars.example.com https://x&quot;&gt;&lt;script&gt;"' in page


def test_picture_origins_enter_the_policy_only_when_they_are_plain_origins() -> None:
    policy = content_security_policy(picture_origins=("https://avatars.example.com", "https://x; script-src *"))
    assert "img-src 'self' data: blob: https://avatars.example.com;" in policy
    assert "script-src *" not in policy
