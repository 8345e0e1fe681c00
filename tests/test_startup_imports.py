"""What start-up imports before the window shows: the heavy libraries wait until they are used."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_window_module_leaves_llama_cpp_and_the_parsers_for_later() -> None:
    # llama.cpp loads on the inference thread with the first model, the document parsers in the
    # reader's child process, the hub's full API with the first look-up; the window shows first.
    code = (
        "import os, sys; os.environ['QT_QPA_PLATFORM'] = 'offscreen';"
        "import app.bootstrap, app.core.models.network, app.ui.main_window;"
        "print(sorted(m for m in ('llama_cpp', 'docx', 'pypdfium2', 'selectolax', 'huggingface_hub.hf_api')"
        " if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"
