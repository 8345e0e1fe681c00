"""Tern in the desktop's menus: the desktop entry, icons and the GGUF file type.

The .deb installs these system-wide; the portable tarball adds them for one
user on request (`Tern --install-desktop-entry`, and `--uninstall-desktop-entry`
to take them away again). Both use the text built here, so the menu entry a
user gets is the same either way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from app import APP_NAME, DESKTOP_ID

# What "Open with Tern" is offered for: models to import, documents to chat about.
MIME_TYPES = (
    "application/x-gguf",
    "application/pdf",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "text/markdown",
)
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)
_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")


def desktop_entry(command: list[str]) -> str:
    """The text of Tern's desktop entry, running `command` with the chosen files."""
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            f"Name={APP_NAME}",
            "GenericName=Private AI assistant",
            "Comment=Chat with Gemma models on this computer, offline",
            f"Exec={' '.join(_exec_quote(arg) for arg in command)} %F",
            f"Icon={DESKTOP_ID}",
            "Terminal=false",
            "Categories=Utility;",
            "Keywords=AI;LLM;Gemma;chat;assistant;offline;private;",
            "MimeType=" + "".join(f"{m};" for m in MIME_TYPES),
            "StartupNotify=true",
            "",
        ]
    )


def icon_svg() -> bytes:
    """The app icon, scalable."""
    return resources.files("resources").joinpath("icons", "tern.svg").read_bytes()


def mime_xml() -> bytes:
    """The shared-mime-info definition of GGUF files."""
    return resources.files("resources").joinpath("linux", f"{DESKTOP_ID}-mime.xml").read_bytes()


def launcher() -> list[str]:
    """The command a desktop entry should run: the frozen executable, or this environment's `tern`."""
    if getattr(sys, "frozen", False):
        return [str(Path(sys.executable).resolve())]
    script = Path(sys.executable).with_name("tern")
    return [str(script)] if script.exists() else [sys.executable, "-m", "app"]


def _exec_quote(arg: str) -> str:
    """Quote one Exec argument as the Desktop Entry spec asks (double quotes; string escapes first)."""
    if arg and not any(c in arg for c in _RESERVED):
        return arg
    quoted = "".join("\\" + c if c in '"`$\\' else c for c in arg)
    return '"' + quoted.replace("\\", "\\\\") + '"'


def _data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def _targets(data_home: Path) -> dict[str, Path]:
    return {
        "entry": data_home / "applications" / f"{DESKTOP_ID}.desktop",
        "svg": data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{DESKTOP_ID}.svg",
        "mime": data_home / "mime" / "packages" / f"{DESKTOP_ID}.xml",
    }


def _png_icons(data_home: Path) -> dict[Path, Path]:
    """PNGs rendered at build time (next to the frozen executable), and where each goes."""
    found: dict[Path, Path] = {}
    share = Path(sys.executable).resolve().parent / "share" / "icons" / "hicolor"
    for size in ICON_SIZES:
        source = share / f"{size}x{size}" / "apps" / f"{DESKTOP_ID}.png"
        if source.is_file():
            found[source] = data_home / "icons" / "hicolor" / f"{size}x{size}" / "apps" / source.name
    return found


def install(data_home: Path | None = None) -> list[Path]:
    """Add Tern to this user's menus and 'Open with' lists; returns the files written."""
    home = data_home or _data_home()
    targets = _targets(home)
    contents = {
        targets["entry"]: desktop_entry(launcher()).encode(),
        targets["svg"]: icon_svg(),
        targets["mime"]: mime_xml(),
    }
    for source, target in _png_icons(home).items():
        contents[target] = source.read_bytes()
    for target, data in contents.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_bytes(data)
        os.replace(temporary, target)
    _refresh_caches(home)
    return sorted(contents)


def uninstall(data_home: Path | None = None) -> list[Path]:
    """Remove what `install` added; returns the files removed."""
    home = data_home or _data_home()
    removed = []
    icons = home / "icons" / "hicolor"
    candidates = [*_targets(home).values()]
    candidates += [icons / f"{s}x{s}" / "apps" / f"{DESKTOP_ID}.png" for s in ICON_SIZES]
    for path in candidates:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            removed.append(path)
    _refresh_caches(home)
    return removed


def _refresh_caches(data_home: Path) -> None:
    """Tell the desktop about the change, with whichever of the usual tools are installed."""
    commands = [
        ["update-desktop-database", "-q", str(data_home / "applications")],
        ["update-mime-database", str(data_home / "mime")],
        ["gtk-update-icon-cache", "-q", "-t", "-f", str(data_home / "icons" / "hicolor")],
    ]
    for command in commands:
        if shutil.which(command[0]) and Path(command[-1]).is_dir():
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(command, check=False, capture_output=True, timeout=30)
