"""A chat that runs until it is killed: the real window, worker, model and store.

Run by tests/integration/crash/test_kill_during_answer.py as a subprocess. It sends
questions one after another into one conversation and prints a JSON line for
each thing the user has seen: a question sent, and the answer's text after
every view update (with the wall-clock time), flushed at once.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QModelIndex, QTimer
from PySide6.QtWidgets import QApplication

from app import settings as opts
from app.core.paths import AppPaths
from app.services import Services
from app.settings import Settings
from app.ui.chat_model import MessageRole
from app.ui.main_window import MainWindow

QUESTIONS = [
    "Tell me a long story about a lighthouse keeper.",
    "Describe the ocean at night in detail.",
    "Write a long letter to a friend about a journey.",
    "Explain how ships navigate by the stars.",
]


def report(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def main(model: Path) -> None:
    app = QApplication([sys.argv[0]])
    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    settings.set(opts.CONTEXT_SIZE, 2048)
    settings.set(opts.MAX_TOKENS, 160)
    services = Services.build(paths)
    services.start()
    window = MainWindow(settings, services, paths, show_dialogs=False)
    sent = 0

    def ask(*_: object) -> None:
        nonlocal sent
        text = QUESTIONS[sent % len(QUESTIONS)] + f" (#{sent})"
        if window.send_message(text):
            sent += 1
            report("sent", text=text)

    def on_change(top: QModelIndex, _bottom: QModelIndex, roles: list[int]) -> None:
        item = window.model.item(top.row())
        if MessageRole.TEXT in roles and item.role == "assistant":
            report("text", question=sent - 1, text=item.text)

    window.history.ready.connect(lambda: window.load_model(model))
    window.model_ready.connect(ask)
    window.answer_finished.connect(lambda _r: QTimer.singleShot(0, ask))
    window.model.dataChanged.connect(on_change)
    window.history.error.connect(lambda msg: report("store-error", message=msg))
    window.history.unavailable.connect(lambda exc: report("store-error", message=str(exc)))
    window.model_failed.connect(lambda msg: report("model-failed", message=msg))
    app.exec()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
