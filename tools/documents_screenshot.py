"""Screenshot of document chat for the README: a dropped folder, read and asked about, with its sources.

    tools/screenshot.sh --documents resources/documents.png
    tools/screenshot.sh --documents follow-up.png --long

Uses a throwaway profile: a small PDF, a Markdown note and a photo (which is
refused with its reason) are attached, then a question is asked. With --long,
a 10-page PDF is attached instead and two questions are asked: the window is
grabbed while the first prompt is read (to `<out>-reading.png`) and after the
follow-up's answer, whose stats say how much of the prompt came from the cache.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
PAGES_LONG = 10  # about 3,400 tokens: whole, at the default 8,192-token context
PAGES = [
    "Skerry Point lighthouse. A short history of the station and its keepers.",
    "The lighthouse was built in 1871 from local granite. The last keeper, Edda Lindqvist, left in 1989.",
]


def main(out: Path, long: bool = False) -> int:
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from PySide6.QtCore import QTimer
    from PySide6.QtGui import QGuiApplication

    from app import settings as opts
    from app.bootstrap import parse_args, shutdown, start
    from app.core.paths import AppPaths
    from app.settings import Settings
    from tests.core.docs.planted_facts import FACTS, build_pages
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

    questions = ["Who was the last keeper of Skerry Point, and when did she leave?"]
    if long:
        folder = profile / "long"
        folder.mkdir()
        pages, where = build_pages()
        write_pdf(folder / "harbour-almanac.pdf", pages[:PAGES_LONG])
        questions = [q for i, (_fact, q) in enumerate(FACTS) if where[i] <= PAGES_LONG][:2]

    def ask() -> None:
        window.composer.setPlainText(questions.pop(0))
        window.composer.submit()

    def grab(to: Path, done: bool = True) -> None:
        frame = window.frameGeometry()
        shot = QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        shot.save(str(to))
        if done:
            session.app.quit()

    def answered() -> None:
        if questions:
            QTimer.singleShot(1500, ask)
        else:
            QTimer.singleShot(500, lambda: grab(out))

    def reading(_turn: int, done: int, _total: int, _left: float) -> None:
        if done and not reading_shot.exists():
            grab(reading_shot, done=False)

    reading_shot = out.with_name(out.stem + "-reading.png")
    session.services.turns.reading.connect(reading)
    window.history.ready.connect(lambda: QTimer.singleShot(300, lambda: window.documents.attach([folder])))
    window.model_ready.connect(lambda *_: QTimer.singleShot(2500 if not long else 8000, ask))
    window.answer_finished.connect(lambda *_: answered())
    QTimer.singleShot(60_000 if not long else 600_000, lambda: grab(out.with_name(out.stem + "-timeout.png")))
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), "--long" in sys.argv[2:]))
