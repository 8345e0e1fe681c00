"""Screenshot of the real app mid-answer, for the README.

    xvfb-run -s "-screen 0 1280x800x24" .venv/bin/python packaging/screenshot.py resources/screenshot.png [--model PATH]

Starts Tern as usual, asks two questions, and grabs the X screen while the
second answer is still streaming, after the model panel's meter has updated.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

from app.bootstrap import parse_args, shutdown, start

QUESTIONS = [
    "Write a haiku about the sea.",
    "Explain what a lighthouse does.",
]
GRAB_AFTER_UPDATES = 25  # view updates (~30 ms apart) into the second answer


def main(out: Path, model: Path | None) -> int:
    args = ["--no-err-windows"] + (["--model", str(model)] if model else [])
    session = start(parse_args(args))
    window = session.window
    window.resize(1280, 780)
    window.move(0, 0)
    pending = list(QUESTIONS)
    pieces = 0

    def ask(*_: object) -> None:
        if pending:
            window.composer.setPlainText(pending.pop(0))
            window.composer.submit()

    grabbed = False

    def grab() -> None:
        nonlocal grabbed
        if grabbed:
            return
        grabbed = True
        frame = window.frameGeometry()
        shot = QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        shot.save(str(out))
        session.app.quit()

    readings = 0

    def on_reading(*_: object) -> None:
        nonlocal readings
        readings += 1

    def on_update(*_: object) -> None:
        nonlocal pieces
        if not pending and window.busy:
            pieces += 1
            if pieces >= GRAB_AFTER_UPDATES and readings >= 3:
                grab()

    window.model_ready.connect(ask)
    window.answer_finished.connect(lambda _r: QTimer.singleShot(300, ask))
    window.model.dataChanged.connect(on_update)
    window.memory_monitor.reading.connect(on_reading)
    QTimer.singleShot(120_000, session.app.quit)
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path, nargs="?", default=Path("screenshot.png"))
    parser.add_argument("--model", type=Path)
    options = parser.parse_args()
    sys.exit(main(options.out, options.model))
