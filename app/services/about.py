"""What About shows that has to be read from disk: versions (SQLCipher's, packages'), components, licences.

Gathered on a worker thread (`about_details`), so opening About never reads
package metadata on the GUI thread.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from importlib import metadata

import PySide6
from PySide6.QtCore import qVersion
from PySide6.QtGui import QGuiApplication

from app import APP_NAME, __version__
from app.core.engine import backends
from app.core.store.database import cipher_version
from app.licences import Component, components, notice_text


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def versions() -> list[tuple[str, str]]:
    """(component, version) for About and for bug reports."""
    backend = backends.current()
    if backend is None:
        llama, cpu = "not loaded yet", "not loaded yet"
    else:
        llama = f"{backend.llama_cpp_commit} (ggml {backend.ggml_version})"
        cpu = backend.variant + (f": {' '.join(backend.features)}" if backend.features else "")
    build = "portable bundle" if getattr(sys, "frozen", False) else f"from source ({sys.prefix})"
    return [
        (APP_NAME, f"{__version__}, {build}"),
        ("llama.cpp", llama),
        ("llama.cpp CPU backend", cpu),
        ("llama-cpp-python", _package_version("llama-cpp-python")),
        ("Qt", f"{qVersion()} (PySide6 {PySide6.__version__}, {QGuiApplication.platformName()})"),
        ("Python", f"{platform.python_version()} ({platform.python_implementation()})"),
        ("SQLCipher", cipher_version()),
        ("System", platform.platform()),
    ]


@dataclass(frozen=True)
class AboutDetails:
    """What About shows that comes from disk (package metadata, licence files, SQLCipher): read off the GUI."""

    versions: list[tuple[str, str]]
    components: list[Component]
    notice: str


def about_details() -> AboutDetails:
    """Gather About's versions and licences (on a worker thread)."""
    return AboutDetails(versions(), components(), notice_text())
