"""`tern --self-test`: the real app, end to end, headless.

Waits for the model, sends a prompt through the composer's own path, and
measures the longest stall of the GUI thread while the answer streams with a
QTimer heartbeat. Prints one JSON object and sets the exit code.
"""

from __future__ import annotations

import json
import sys
import time

from PySide6.QtCore import QObject, QTimer
from PySide6.QtWidgets import QApplication

from app.core.engine.llama_engine import LoadedModel
from app.core.turn import TurnResult
from app.ui.main_window import MainWindow

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
MIN_TOKENS = 16
MAX_ATTEMPTS = 3  # a sampled answer may end early; that is the model's choice, not a failure
HEARTBEAT_MS = 5
TIMEOUT_S = 300


class SelfTest(QObject):
    """Drives the window and reports."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self._window = window
        self.exit_code = 1
        self._last_beat = 0.0
        self._max_stall_ms = 0.0
        self._streaming = False
        self._attempts = 0
        self._heartbeat = QTimer(self)
        self._heartbeat.setInterval(HEARTBEAT_MS)
        self._heartbeat.timeout.connect(self._beat)
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(lambda: self._finish({"ok": False, "error": f"timed out after {TIMEOUT_S} s"}))

    def start(self) -> None:
        """Begin once the model has loaded."""
        self._window.model_ready.connect(self._on_loaded)
        self._window.model_failed.connect(self._on_failed)
        self._window.answer_finished.connect(self._on_answer)
        self._deadline.start(TIMEOUT_S * 1000)

    def _on_loaded(self, _loaded: LoadedModel) -> None:
        self._window.composer.setPlainText(PROMPT)
        self._streaming = True
        self._attempts = 1
        self._last_beat = time.perf_counter()
        self._heartbeat.start()
        self._window.composer.submit()  # the same path as pressing Enter

    def _on_failed(self, message: str) -> None:
        self._finish({"ok": False, "error": message})

    def _beat(self) -> None:
        now = time.perf_counter()
        if self._streaming:
            self._max_stall_ms = max(self._max_stall_ms, (now - self._last_beat) * 1000 - HEARTBEAT_MS)
        self._last_beat = now

    def _on_answer(self, result: TurnResult) -> None:
        s = result.stats
        if s.completion_tokens < MIN_TOKENS and self._attempts < MAX_ATTEMPTS:
            self._attempts += 1
            QTimer.singleShot(0, self._window.regenerate)  # the Regenerate button's path
            return
        self._streaming = False
        text = self._window.model.item(self._window.model.rowCount() - 1).text
        report: dict[str, object] = {
            "ok": s.completion_tokens >= MIN_TOKENS and bool(text.strip()),
            "tokens": s.completion_tokens,
            "ttft_ms": round(s.ttft_ms, 1),
            "decode_tok_s": round(s.decode_tok_s, 1),
            "max_ui_stall_ms": round(max(0.0, self._max_stall_ms), 1),
            "prompt_tokens": s.prompt_tokens,
            "stop_reason": s.stop_reason.value,
            "attempts": self._attempts,
        }
        if not report["ok"]:
            report["error"] = f"only {s.completion_tokens} tokens streamed (need {MIN_TOKENS})"
        self._finish(report)

    def _finish(self, report: dict[str, object]) -> None:
        self._heartbeat.stop()
        self._deadline.stop()
        self.exit_code = 0 if report.get("ok") else 1
        print(json.dumps(report), flush=True)
        sys.stdout.flush()
        QApplication.instance().quit()  # type: ignore[union-attr]
