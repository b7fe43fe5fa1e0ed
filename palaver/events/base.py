"""Base of every JSON event: immutable, validated on decode, tagged with its name and version."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class EventV(BaseModel):
    """Subclasses declare ``event: Literal[...]`` and ``version: Literal[n]``; the pair selects the schema."""

    model_config = ConfigDict(frozen=True, extra="forbid")
