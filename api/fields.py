"""Request fields whose OpenAPI schema says exactly what the server accepts: a client that follows the
document is never refused, and one that breaks it always is.

Patterns mean the same to every engine that reads them: the server's (pydantic's, Rust ``regex``), the
document's (ECMA-262, as JSON Schema says: what clients and validators use) and Python's ``re``. Escapes
such as ``\\s``, ``\\d`` or ``\\w`` do not: each engine has its own idea of which Unicode characters are
whitespace or digits (U+0085 is whitespace to Rust and Python but not to ECMA, U+FEFF to ECMA only; Rust's
``\\d`` takes Arabic-Indic digits, ECMA's only 0-9). So the patterns here name their characters, and
``tests/unit/test_openapi_document.py`` checks that the document's and the server's verdicts agree.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field, SecretStr
from pydantic_core import PydanticCustomError

# Whitespace by any engine's definition (ECMA's \s, Rust's and Python's Unicode White_Space).
SPACE = r"\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
ID_PART = r"^[A-Za-z0-9._-]{1,64}$"  # as palaver.ids.is_valid_id_part
USER_ID = r"^usr_[0-9a-f]{24}$"
USERNAME = r"^[A-Za-z0-9._-]{3,64}$"
EMAIL = rf"^[^@{SPACE}]+@[^@{SPACE}]+\.[^@{SPACE}]+$"
HTTP_URL_OR_EMPTY = rf"^(https?://[^{SPACE}]+)?$"
NOT_BLANK = rf"[^{SPACE}]"  # at least one character that is not whitespace
FULL_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
PASSWORD_LENGTH = (8, 1024)


def _password_length(value: SecretStr) -> SecretStr:
    # Said without the value: a validation error must not echo a password.
    if not PASSWORD_LENGTH[0] <= len(value.get_secret_value()) <= PASSWORD_LENGTH[1]:
        raise PydanticCustomError("password_length", "{low}-{high} characters",
                                  {"low": PASSWORD_LENGTH[0], "high": PASSWORD_LENGTH[1]})  # fmt: skip
    return value


def _not_a_boolean(value: Any) -> Any:
    # JSON Schema's integer takes 134.0 but never true/false; pydantic's lax int takes both, its strict int
    # neither. Lax, minus the booleans, is what the document says.
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _calendar_date(value: str) -> str:
    try:
        datetime.date.fromisoformat(value)
    except ValueError:
        raise PydanticCustomError("date_invalid", "not a calendar date (YYYY-MM-DD)") from None
    return value


Password = Annotated[SecretStr, AfterValidator(_password_length),
                     Field(json_schema_extra={"minLength": PASSWORD_LENGTH[0], "maxLength": PASSWORD_LENGTH[1]})]  # fmt: skip
def integer(**constraints: Any) -> Any:
    """An integer as JSON Schema means it: 3 and 3.0, not true. (The constraints go before the validator:
    after it, pydantic writes them into the schema under their Python names, ``ge`` for ``minimum``.)"""
    return Annotated[int, Field(**constraints), BeforeValidator(_not_a_boolean)]
# A day as RFC 3339 ``full-date`` (JSON Schema's ``date`` format): the pattern, and a real calendar day.
CalendarDate = Annotated[str, Field(pattern=FULL_DATE, json_schema_extra={"format": "date"}),
                         AfterValidator(_calendar_date)]  # fmt: skip


def omittable(**constraints: Any) -> Any:
    """A field that a request may leave out but not send as null, in a model with ``BodyRules``: annotate
    it with the value's type (``x: str = omittable(max_length=9)``) and read it when it is in
    ``model_fields_set``. Validation never checks the ``None`` default but does an explicit null (which
    fails as the wrong type); the schema is the type alone (``BodyRules`` drops the null default)."""
    return Field(default=None, **constraints)


@dataclass(frozen=True)
class BodyRules:
    """Rules across the fields of a request body, stated once for both the schema and the server: the
    model takes ``json_schema`` as its ``json_schema_extra`` and calls ``check`` in a model validator.

    ``at_least_one_of``: ``omittable`` fields of which the body names one or more; ``exactly_one_of``: of
    which it names one. ``requires``: a field
    that may only come with another (a new password with the current one)."""

    at_least_one_of: tuple[str, ...] = ()
    exactly_one_of: tuple[str, ...] = ()
    requires: dict[str, str] = field(default_factory=dict)

    def json_schema(self, schema: dict[str, Any]) -> None:
        for prop in schema.get("properties", {}).values():
            if "default" in prop and prop["default"] is None:  # an omittable field: not nullable
                del prop["default"]
        if self.at_least_one_of:
            schema["anyOf"] = [{"required": [name]} for name in self.at_least_one_of]
        if self.exactly_one_of:
            schema["oneOf"] = [{"required": [name]} for name in self.exactly_one_of]
        if self.requires:
            schema["dependentRequired"] = {name: [needed] for name, needed in self.requires.items()}

    def check(self, model: BaseModel) -> None:
        given = model.model_fields_set
        if self.at_least_one_of and not given & set(self.at_least_one_of):
            raise PydanticCustomError("too_few_fields", "name at least one of {names}",
                                      {"names": ", ".join(self.at_least_one_of)})  # fmt: skip
        if self.exactly_one_of and len(given & set(self.exactly_one_of)) != 1:
            raise PydanticCustomError("one_field", "name exactly one of {names}",
                                      {"names": ", ".join(self.exactly_one_of)})  # fmt: skip
        for name, needed in self.requires.items():
            if name in given and needed not in given:
                raise PydanticCustomError("missing", "{name} comes with {needed}", {"name": name, "needed": needed})
