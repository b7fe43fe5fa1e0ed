"""The OpenAPI document tells the truth, checked on the document itself (the running API is checked by
schemathesis in tests/integration/test_openapi_contract.py): every route that takes input declares 422,
every route with a body declares 400, every declared response has a body schema, the 422 the app answers
has the declared body, a 405 lists exactly the documented methods, and every pattern in the document
gives the same verdict as the server's validation of it."""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache
from typing import Annotated, Any

import jsonschema_rs
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import Field, TypeAdapter, ValidationError

from api.responses import declared
from palaver.settings import Settings
from stack.web import create_app
from tests.signed_in import CALLER_ID, sign_in

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
NO_BODY = {"204", "304"}


@cache
def app() -> FastAPI:
    """The web process as ``palaver up`` composes it; no lifespan: nothing here reaches the handlers."""
    return create_app(Settings(), {"ingest", "api", "store"})


@cache
def document() -> dict[str, Any]:
    return app().openapi()


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document()["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield method.upper(), path, operation


def validator(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    """A validator of ``schema`` as the document means it (ECMA-262 patterns), its refs resolved."""
    return jsonschema_rs.validator_for({**schema, "components": document()["components"]})


def test_every_route_that_takes_input_declares_422_with_the_validation_error_body() -> None:
    missing = [
        f"{method} {path}"
        for method, path, op in operations()
        if (op.get("parameters") or "requestBody" in op)
        and op["responses"].get("422", {}).get("content", {}).get("application/json", {}).get("schema")
        != {"$ref": "#/components/schemas/HTTPValidationError"}
    ]
    assert missing == []


def test_every_route_with_a_body_declares_400() -> None:
    """FastAPI answers 400 when the body cannot be read (not UTF-8)."""
    assert [f"{m} {p}" for m, p, op in operations() if "requestBody" in op and "400" not in op["responses"]] == []


def test_every_declared_response_has_a_body_schema() -> None:
    bare = [
        f"{method} {path} {status}"
        for method, path, op in operations()
        for status, response in op["responses"].items()
        if status not in NO_BODY and not response.get("content", {}).get("application/json", {}).get("schema")
    ]
    assert bare == []


def test_every_api_route_declares_503_with_retry_after() -> None:
    """Every API route reads or writes through the store or the broker."""
    missing = [
        f"{method} {path}"
        for method, path, op in operations()
        if path.startswith("/v1/") and "Retry-After" not in op["responses"].get("503", {}).get("headers", {})
    ]
    assert missing == []


def test_declared_refuses_a_status_it_has_no_meaning_for() -> None:
    with pytest.raises(ValueError):
        declared(418)
    with pytest.raises(ValueError):
        declared(404, notes={409: "a note for an undeclared status"})


# --- what the app answers ---------------------------------------------------------------------------------

BAD_REQUESTS = [
    ("POST", "/v1/users", {"username": "a b", "email": "x", "password": "short-pw"}),
    ("POST", "/v1/users", {"email": "ana@example.com", "password": "correct horse battery"}),
    ("POST", "/v1/users", {"username": "ana", "email": "ana@example.com", "password": "s3cret"}),
    ("PATCH", f"/v1/users/{CALLER_ID}", {}),
    ("PATCH", f"/v1/users/{CALLER_ID}", {"username": None}),
    ("PATCH", f"/v1/users/{CALLER_ID}", {"password": "correct horse battery"}),
    ("PATCH", "/v1/meetings/m1/action-items/ai_1", {}),
    ("PATCH", "/v1/meetings/m1/action-items/ai_1", {"due_date": "2026-02-30"}),
    ("POST", "/v1/meetings/m1/chat", {"text": "\u0085\ufeff "}),
    ("POST", "/v1/meetings", {"title": "\u0085\ufeff "}),
    ("GET", "/v1/users/not-an-id", None),
]


@pytest.mark.parametrize(("method", "path", "body"), BAD_REQUESTS)
def test_a_validation_error_has_the_declared_body_and_no_password(method: str, path: str, body: Any) -> None:
    served = app()
    answer = TestClient(served, headers=sign_in(served)).request(method, path, json=body)
    assert answer.status_code == 422, answer.text
    errors = list(validator({"$ref": "#/components/schemas/HTTPValidationError"}).iter_errors(answer.json()))
    assert errors == [], answer.text
    for secret in ("short-pw", "correct horse battery", "s3cret"):
        assert secret not in answer.text


def test_an_unreadable_body_is_a_declared_400() -> None:
    answer = TestClient(app()).post("/v1/users", content=b"\xff\xfe{", headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    assert validator(document()["paths"]["/v1/users"]["post"]["responses"]["400"]["content"]["application/json"]["schema"]).is_valid(answer.json())  # fmt: skip


@pytest.mark.parametrize("path", sorted(document()["paths"]))
def test_a_405_allows_exactly_the_documented_methods(path: str) -> None:
    concrete = re.sub(r"\{[^}]+\}", "x1", path).replace("/users/x1", "/users/usr_" + "0" * 24)
    documented = {m.upper() for m in document()["paths"][path] if m in METHODS}
    unsupported = next(m for m in ("OPTIONS", "TRACE", "PUT", "POST") if m not in documented)
    answer = TestClient(app()).request(unsupported, concrete)
    assert answer.status_code == 405
    assert set(answer.headers["allow"].split(", ")) - {"HEAD"} == documented


# --- patterns -------------------------------------------------------------------------------------------


def patterns_in(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("pattern"), str):
            yield node["pattern"]
        for value in node.values():
            yield from patterns_in(value)
    elif isinstance(node, list):
        for value in node:
            yield from patterns_in(value)


PATTERNS = sorted(set(patterns_in(document())))
# Characters the regex engines disagree on when a pattern says \s, \d, \w or "." (whitespace, controls,
# digits and letters outside ASCII), and a few that all agree on.
TRICKY = "\x00\t\n\x0b\x0c\r\x1c\x1f \x85\xa0\u1680\u2000\u2028\u2029\u202f\u205f\u3000\ufeff\u180e\u200b\u0663\uff10\u00e9\u212a_.-@/:a0"


def test_the_document_has_the_patterns_of_the_server() -> None:
    from api import fields

    assert {fields.EMAIL, fields.USERNAME, fields.HTTP_URL_OR_EMPTY, fields.NOT_BLANK, fields.ID_PART,
            fields.USER_ID, fields.FULL_DATE} <= set(PATTERNS)  # fmt: skip


@st.composite
def near_matches(draw: st.DrawFn, pattern: str) -> str:
    """A string the pattern matches, with a few characters replaced by or inserted from ``TRICKY``."""
    text = list(draw(st.from_regex(pattern, fullmatch=True)))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        char = draw(st.sampled_from(TRICKY))
        if at < len(text) and draw(st.booleans()):
            text[at] = char
        else:
            text.insert(at, char)
    return "".join(text)


def server_accepts(pattern: str, text: str) -> bool:
    try:
        TypeAdapter(Annotated[str, Field(pattern=pattern)]).validate_python(text)
        return True
    except ValidationError:
        return False


@pytest.mark.parametrize("pattern", PATTERNS)
def test_a_pattern_means_the_same_to_the_document_and_the_server(pattern: str) -> None:
    """The document's verdict (ECMA-262, as clients and schemathesis read it) is the server's (pydantic's
    Rust regex): a client that follows the document is never refused, one that breaks it always is."""
    ecma = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})

    @settings(max_examples=300, derandomize=True, deadline=None, database=None)
    @given(near_matches(pattern))
    def agree(text: str) -> None:
        assert ecma.is_valid(text) == server_accepts(pattern, text), ascii(text)

    agree()
    for char in TRICKY:  # each alone and around a match, whatever the draw
        for text in (char, f"a{char}", f"a@b.c{char}", f"https://a{char}"):
            assert ecma.is_valid(text) == server_accepts(pattern, text), (ascii(text), pattern)
