"""The names of the enrichment backends, known to the whole system: the API checks a requested backend
against them (it may not import the enrichment service), and ``enrichment.backend`` registers exactly these
(a unit test holds the two together). Add a backend's name here when adding the backend."""

from __future__ import annotations

BACKEND_NAMES: tuple[str, ...] = ("local", "openai", "watsonx")


def unknown_backend(name: str) -> str | None:
    """Why ``name`` is not a backend (the sentence names the known ones), or None when it is one."""
    if name in BACKEND_NAMES:
        return None
    return f"unknown enrichment backend {name!r}; choose one of {', '.join(BACKEND_NAMES)}"
