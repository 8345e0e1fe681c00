"""Guards on the platform underneath: layering, and the Qt binding's reference counting."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_core_imports_without_qt() -> None:
    code = (
        "import sys, pkgutil, importlib\n"
        "sys.modules['PySide6'] = None\n"
        "sys.modules['shiboken6'] = None\n"
        "import app.core\n"
        "names = [m.name for m in pkgutil.walk_packages(app.core.__path__, 'app.core.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "assert 'app.core.turn' in names and 'app.core.engine.llama_engine' in names\n"
        "print(len(names))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) >= 10


def test_signal_emission_keeps_reference_counts() -> None:
    # PySide6 6.12.0 dropped a reference to True on every emit and crashed Python 3.11.
    code = (
        "import sys\n"
        "from PySide6.QtCore import QCoreApplication, QObject, Signal\n"
        "class O(QObject):\n"
        "    s = Signal(str, float)\n"
        "app = QCoreApplication([])\n"
        "o = O(); got = []\n"
        "o.s.connect(lambda a, b: got.append(b))\n"
        "before = sys.getrefcount(True)\n"
        "for _ in range(200): o.s.emit('x', 0.5)\n"
        "print(sys.getrefcount(True) - before, len(got))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    drift, received = map(int, result.stdout.split())
    assert received == 200
    assert abs(drift) < 20
