"""The desktop entry, icons and GGUF file type that the .deb installs and the tarball adds on request."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from app import DESKTOP_ID
from app.desktop_entry import desktop_entry, install, uninstall

ROOT = Path(__file__).resolve().parent.parent


def test_the_entry_quotes_its_command_as_the_spec_asks(tmp_path: Path) -> None:
    text = desktop_entry(["/opt/My Apps/Tern $1", "--flag"])
    exec_line = next(line for line in text.splitlines() if line.startswith("Exec="))
    # Double quotes around an argument with reserved characters; `$` escaped, then backslashes doubled.
    assert exec_line == 'Exec="/opt/My Apps/Tern \\\\$1" --flag %F'
    assert desktop_entry(["/opt/tern/Tern"]).count("Exec=/opt/tern/Tern %F") == 1
    if shutil.which("desktop-file-validate"):
        entry = tmp_path / f"{DESKTOP_ID}.desktop"
        entry.write_text(text)
        result = subprocess.run(["desktop-file-validate", str(entry)], capture_output=True, text=True)
        assert result.returncode == 0, result.stdout + result.stderr


def test_install_and_uninstall_for_one_user(tmp_path: Path) -> None:
    data_home = tmp_path / "share"
    written = install(data_home)
    entry = data_home / "applications" / f"{DESKTOP_ID}.desktop"
    svg = data_home / "icons" / "hicolor" / "scalable" / "apps" / f"{DESKTOP_ID}.svg"
    mime = data_home / "mime" / "packages" / f"{DESKTOP_ID}.xml"
    assert {entry, svg, mime} <= set(written)
    text = entry.read_text()
    assert f"Exec={Path(sys.executable).with_name('tern')} %F" in text  # this venv's launcher
    assert "application/x-gguf;" in text and "application/pdf;" in text
    assert svg.read_bytes().startswith(b"<svg") and b'type="application/x-gguf"' in mime.read_bytes()
    if shutil.which("update-mime-database"):  # the desktop now knows a .gguf by name and by its magic
        assert "application/x-gguf" in (data_home / "mime" / "globs2").read_text()
    removed = uninstall(data_home)
    assert {entry, svg, mime} <= set(removed)
    assert not entry.exists() and not svg.exists() and not mime.exists()
    assert uninstall(data_home) == []


def test_the_command_line_adds_and_removes_the_entry(tmp_path: Path) -> None:
    env = {"XDG_DATA_HOME": str(tmp_path / "share"), "HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    added = subprocess.run(
        [sys.executable, "-m", "app", "--install-desktop-entry"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert added.returncode == 0, added.stderr
    assert (tmp_path / "share" / "applications" / f"{DESKTOP_ID}.desktop").exists()
    removed = subprocess.run(
        [sys.executable, "-m", "app", "--uninstall-desktop-entry"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert removed.returncode == 0 and "Removed" in removed.stdout
    assert not (tmp_path / "share" / "applications" / f"{DESKTOP_ID}.desktop").exists()
    assert not (tmp_path / ".local").exists()  # it never started the app (no profile was created)
