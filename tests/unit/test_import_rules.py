"""The house's import rules, checked on the import graph of every module (imports inside functions too):

- ``palaver`` (the kernel) imports no service, no benchmark and not the composition root;
- a service imports only the kernel (and third-party code): never another service or ``stack``;
- nothing but ``stack`` (and tests) imports ``stack``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "palaver"
SERVICES = ("ingest", "stt_workers", "merger", "enrichment", "api")
COMPOSITION = "stack"
OURS = (KERNEL, *SERVICES, COMPOSITION, "bench", "tests")


def imported_packages(path: Path) -> set[tuple[str, int]]:
    """(top-level package of ours, line) for every import statement of the file, wherever it stands."""
    found: set[tuple[str, int]] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found |= {(name.split(".")[0], node.lineno) for name in names if name.split(".")[0] in OURS}
    return found


def import_graph() -> dict[str, set[tuple[str, int]]]:
    """Module path (relative to the repository) -> the packages of ours it imports."""
    return {
        str(path.relative_to(ROOT)): imported_packages(path)
        for package in OURS
        if package != "tests"
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def violations(graph: dict[str, set[tuple[str, int]]]) -> list[str]:
    allowed = {KERNEL: {KERNEL}, COMPOSITION: set(OURS) - {"tests"}, "bench": set(OURS) - {"tests", COMPOSITION}}
    allowed |= {service: {KERNEL, service} for service in SERVICES}
    bad = []
    for module, imports in graph.items():
        package = module.split("/")[0]
        bad += [f"{module}:{line} imports {target}" for target, line in sorted(imports) if target not in allowed[package]]
    return bad


def test_the_kernel_imports_no_service_and_services_only_the_kernel() -> None:
    graph = import_graph()
    assert any(module.startswith("stack/") for module in graph), "the composition root was not scanned"
    assert violations(graph) == []


def test_the_check_catches_each_kind_of_violation() -> None:
    graph = {
        "palaver/store/writer.py": {("palaver", 1), ("merger", 3)},
        "merger/app.py": {("palaver", 1), ("stt_workers", 9)},
        "api/users.py": {("stack", 4)},
        "stack/cli.py": {("api", 1), ("bench", 2), ("palaver", 3)},
    }
    assert violations(graph) == [
        "palaver/store/writer.py:3 imports merger",
        "merger/app.py:9 imports stt_workers",
        "api/users.py:4 imports stack",
    ]


def test_function_level_imports_count(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import os\n\ndef f():\n    from merger.app import Merger\n    import api.users\n")
    assert imported_packages(module) == {("merger", 4), ("api", 5)}
