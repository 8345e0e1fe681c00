"""Screenshot of the real app mid-answer, for the README.

    xvfb-run -s "-screen 0 1000x760x24" .venv/bin/python packaging/screenshot.py resources/screenshot.png

Starts Tern as usual, asks two questions, and grabs the X screen while the
second answer is still streaming.
"""

from __future__ import annotations

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


def main(out: Path) -> int:
    session = start(parse_args(["--no-err-windows"]))
    window = session.window
    window.resize(1000, 740)
    window.move(0, 0)
    pending = list(QUESTIONS)
    pieces = 0

    def ask(*_: object) -> None:
        if pending:
            window.composer.setPlainText(pending.pop(0))
            window.composer.submit()

    def grab() -> None:
        frame = window.frameGeometry()
        shot = QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        shot.save(str(out))
        session.app.quit()

    def on_update(*_: object) -> None:
        nonlocal pieces
        if not pending and window.busy:
            pieces += 1
            if pieces == GRAB_AFTER_UPDATES:
                grab()

    window.model_ready.connect(ask)
    window.answer_finished.connect(lambda _r: QTimer.singleShot(300, ask))
    window.model.dataChanged.connect(on_update)
    QTimer.singleShot(120_000, session.app.quit)
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "screenshot.png")))
