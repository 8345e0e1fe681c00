"""Screenshot of document chat for the README: a dropped folder, read and asked about, with its sources.

    tools/screenshot.sh --documents resources/documents.png

Uses a throwaway profile: a small PDF, a Markdown note and a photo (which is
refused with its reason) are attached, then a question is asked.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
PAGES = [
    "Skerry Point lighthouse. A short history of the station and its keepers.",
    "The lighthouse was built in 1871 from local granite. The last keeper, Edda Lindqvist, left in 1989.",
]


def main(out: Path) -> int:
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QGuiApplication

    from app import settings as opts
    from app.bootstrap import parse_args, shutdown, start
    from app.core.paths import AppPaths
    from app.settings import Settings
    from tests.fixtures.pdfs import write_pdf

    paths = AppPaths.default()
    paths.create()
    Settings(paths.settings_file).set(opts.MAX_TOKENS, 60)
    session = start(parse_args(["--no-err-windows"]))
    window = session.window
    window.resize(1280, 780)
    window.move(0, 0)
    folder = profile / "docs"
    folder.mkdir()
    write_pdf(folder / "skerry-light.pdf", PAGES)
    (folder / "notes.md").write_text("# Visiting\n\nThe island ferry leaves at 9:00 from the north pier.\n")
    (folder / "photo.jpg").write_bytes(b"\xff\xd8\xff" + b"\0" * 50)

    def ask() -> None:
        window.composer.setPlainText("Who was the last keeper of Skerry Point, and when did she leave?")
        window.composer.submit()

    def grab() -> None:
        frame = window.frameGeometry()
        shot = QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        shot.save(str(out))
        session.app.quit()

    window.history.ready.connect(lambda: QTimer.singleShot(300, lambda: window.documents.attach([folder])))
    window.model_ready.connect(lambda *_: QTimer.singleShot(2500, ask))
    window.answer_finished.connect(lambda *_: QTimer.singleShot(500, grab))
    QTimer.singleShot(60_000, session.app.quit)
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
