"""Lint and type checks run with the tests, so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def test_ruff_is_clean() -> None:
    result = subprocess.run(
        [BIN / "ruff", "check", "app", "tests", "bench", "tools", "packaging"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_mypy_is_clean() -> None:
    result = subprocess.run(
        # The synthetic models stand in for real ones in tests and benchmarks, so they are typed as strictly as core.
        [sys.executable, "-m", "mypy", "app", "tools/synthetic_gemma.py", "tools/synthetic_mmproj.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:]


def test_no_module_grows_past_600_lines() -> None:
    big = {
        str(p.relative_to(ROOT)): n
        for p in (ROOT / "app").rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 600
    }
    assert big == {}
