"""Numbered SQL migrations (``NNNN_name.sql``), applied in order at start and recorded in
``schema_migrations``. ``{db}`` in a file stands for the database; statements are separated by ``;``."""

from __future__ import annotations

from importlib import resources
from typing import Any, Protocol


class _Commands(Protocol):
    database: str

    def command(self, sql: str, parameters: dict[str, Any] | None = None) -> Any: ...

    def query(self, sql: str, parameters: dict[str, Any] | None = None) -> list[dict[str, Any]]: ...


def migration_files() -> list[tuple[int, str, str]]:
    """(number, name, sql) for every migration shipped in this package, in order."""
    out = []
    for entry in resources.files(__package__).iterdir():
        if entry.name.endswith(".sql"):
            number, _, rest = entry.name.partition("_")
            out.append((int(number), rest.removesuffix(".sql"), entry.read_text()))
    return sorted(out)


def split_statements(sql: str) -> list[str]:
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def apply_migrations(store: _Commands) -> list[int]:
    db = store.database
    store.command(f"CREATE DATABASE IF NOT EXISTS {db}")
    store.command(
        f"CREATE TABLE IF NOT EXISTS {db}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3) DEFAULT now64(3)) "
        "ENGINE = ReplacingMergeTree ORDER BY version"
    )
    done = {row["version"] for row in store.query(f"SELECT version FROM {db}.schema_migrations")}
    applied = []
    for number, name, sql in migration_files():
        if number in done:
            continue
        for statement in split_statements(sql.replace("{db}", db)):
            store.command(statement)
        store.command(
            f"INSERT INTO {db}.schema_migrations (version, name) VALUES ({{v:UInt32}}, {{n:String}})",
            parameters={"v": number, "n": name},
        )
        applied.append(number)
    return applied
