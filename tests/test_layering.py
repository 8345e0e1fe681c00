"""Imports point one way: a package below never imports one above it, read from the source with `ast`."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# (package folder, module prefixes nothing in it may import)
RULES = [
    # The engine uses chat templates; chat takes plain data (a template's source), never engine types.
    ("app/core/chat", ("app.core.engine",)),
    # Core runs without Qt, from tests, a CLI or a server.
    ("app/core", ("PySide6", "app.ui", "app.services", "app.settings", "app.bootstrap")),
    # Services sit below the widgets.
    ("app/services", ("app.ui",)),
    # Widgets reach the disk, the database and the model only through services.
    (
        "app/ui",
        (
            "sqlcipher3",
            "llama_cpp",
            "app.core.engine.llama_engine",
            "app.core.store.database",
            "app.core.store.backup",
            "app.core.store.keys",
            "app.core.store.key_change",
            "app.core.docs.ingest",
            "app.core.docs.embedder",
        ),
    ),
    # The frozen bundle ships `app` alone: developer tools, tests and benchmarks stay out of it.
    ("app", ("tools", "tests", "bench")),
]


def imported_modules(source: str, package: str) -> set[str]:
    """Every module `source` imports, at top level or inside a function; relative imports made absolute."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parent = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            # `from app.core import engine` imports a package, not a name.
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def _package(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


@pytest.mark.parametrize(("folder", "forbidden"), RULES, ids=[folder for folder, _ in RULES])
def test_imports_point_down(folder: str, forbidden: tuple[str, ...]) -> None:
    files = sorted((ROOT / folder).rglob("*.py"))
    assert files
    wrong = [
        f"{path.relative_to(ROOT)} imports {name}"
        for path in files
        for name in sorted(imported_modules(path.read_text(), _package(path)))
        if any(_under(name, prefix) for prefix in forbidden)
    ]
    assert wrong == []


def test_every_form_of_import_is_seen() -> None:
    source = (
        "import app.core.engine.gguf_info\n"
        "from app.core.engine import options\n"
        "from app.core import engine\n"
        "from ..engine.generation import SamplingParams\n"
        "from . import templates\n"
        "def load():\n"
        "    from app.core.engine.llama_engine import LlamaEngine\n"
    )
    names = imported_modules(source, "app.core.chat")
    assert {
        "app.core.engine.gguf_info",
        "app.core.engine.options",
        "app.core.engine",
        "app.core.engine.generation",
        "app.core.chat.templates",
        "app.core.engine.llama_engine",
    } <= names
