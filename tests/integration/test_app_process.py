"""The real app as a user starts it: `python -m app`, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.models.starter import STARTER_FILE_NAME
from app.crash_handler import CrashHandler
from tests.conftest import user_env

ROOT = Path(__file__).resolve().parents[2]


def run_app(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **user_env(tmp_path), "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.mark.slow
def test_self_test_streams_from_the_starter_model(tmp_path: Path) -> None:
    result = run_app(tmp_path, "--self-test")
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is True
    assert report["tokens"] >= 16
    assert set(report) >= {"tokens", "ttft_ms", "decode_tok_s", "max_ui_stall_ms"}
    assert report["decode_tok_s"] > 0 and report["ttft_ms"] > 0
    # What a frozen bundle most easily gets wrong, checked from the venv too.
    assert report["pdf"]["ok"] and report["tls"]["authorities"] >= 20
    assert report["image"]["ok"] and max(report["image"]["size"]) == 400
    assert report["history"]["ok"]
    if os.environ.get("TERN_TEST_KEYRING") == "1":
        assert "SecretService" in report["history"]["keychain"]
    assert 0 < report["window_shown_s"] < report["model_loaded_s"]
    assert report["cpu_backend"] == "native" and report["frozen"] is False
    # The starter model was assembled into the user's models folder, not next to the code.
    assert (tmp_path / "xdg_data_home" / "tern" / "models" / STARTER_FILE_NAME).is_file()
    log = (tmp_path / "xdg_state_home" / "tern" / "log" / "tern.log").read_text()
    assert "Loaded gemma-3-270m-q4_k_m.gguf" in log


@pytest.mark.slow
def test_self_test_fails_loudly_on_a_broken_model(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a model at all" * 100)
    result = run_app(tmp_path, "--self-test", "--model", str(broken))
    assert result.returncode == 1
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["ok"] is False and "not a GGUF model" in report["error"]


def test_a_killed_run_is_noticed_at_the_next_start(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys; from pathlib import Path; from app.crash_handler import CrashHandler;"
        f"CrashHandler(Path({str(tmp_path)!r}), show_dialogs=False).install();"
        "os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert killed.returncode == -9
    handler = CrashHandler(tmp_path, show_dialogs=False)
    handler.install()
    try:
        assert handler.previous_run_crashed
    finally:
        handler.clean_exit()
    again = CrashHandler(tmp_path, show_dialogs=False)
    again.install()
    again.clean_exit()
    assert not again.previous_run_crashed
