"""Code that must run on Windows and macOS too: nothing POSIX-only at import time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_module_imports_without_posix_only_modules() -> None:
    # `resource` and `fcntl` do not exist on Windows; a module that imports them at import
    # time would stop the frozen Windows app before its window opens.
    code = """
import os, pkgutil, sys, importlib
os.environ["QT_QPA_PLATFORM"] = "offscreen"
import psutil  # its Linux back end uses `resource`; on Windows psutil loads its own instead
for name in ("resource", "fcntl"):
    sys.modules[name] = None  # `import resource` now raises ImportError
import app
failed = []
names = [m.name for m in pkgutil.walk_packages(app.__path__, "app.")]
for name in names:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed.append(f"{name}: {type(exc).__name__}: {exc}")
print(len(names))
print("\\n".join(failed))
"""
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    count, *failures = result.stdout.strip().splitlines()
    assert int(count) > 50  # the walk really found the app's modules
    assert [f for f in failures if f] == []
