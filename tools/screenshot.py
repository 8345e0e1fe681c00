"""Screenshots of the real app for the README: mid-answer, and searching the history; or the layout on a screen.

    tools/screenshot.sh resources/screenshot.png resources/history.png [--model PATH]
    TERN_SCREEN=1366x768x24 QT_SCALE_FACTOR=2 tools/screenshot.sh --window window-200.png
    TERN_SCREEN=1366x768x24 tools/screenshot.sh --lock lock.png
    TERN_SCREEN=1366x768x24 tools/screenshot.sh --first-launch welcome.png
    TERN_SCREEN=1366x768x24 tools/screenshot.sh --starter-answer starter.png

Runs Tern with a throwaway profile whose history holds a few sample
conversations (pinned, today, this week, older; one with two answer versions).
By default it asks two questions and grabs the screen while the second answer
streams; then types a search in the sidebar, opens the hit, and grabs that too.
`--window` grabs the whole screen once the model is loaded and a conversation
is open, as a first launch on that screen and scale lays it out; `--lock` sets
a passphrase, locks, and grabs the lock page. `--first-launch` starts on an
empty profile and grabs the welcome page; `--starter-answer` then asks the
starter model one question and grabs its finished answer. Needs an X display
and a Secret Service, which the wrapper script provides.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

if TYPE_CHECKING:
    from app.bootstrap import Session

QUESTIONS = [
    "Write a haiku about the sea.",
    "Explain what a lighthouse does.",
]
GRAB_AFTER_UPDATES = 25  # view updates (~30 ms apart) into the second answer
DAY = 86_400
SAMPLES: list[tuple[str, float, bool, list[str]]] = [  # title, age in days, pinned, messages (user, assistant, …)
    ("Packing list for the Alps trip", 9, True, ["What should I pack for a week of hiking?", "Layers, a rain shell…"]),
    ("Regex for ISO dates", 0.1, False, ["A regex for 2026-11-28?", r"`^\d{4}-\d{2}-\d{2}$` matches it."]),
    (
        "Lighthouse history notes",
        2,
        False,
        [
            "When was the first lighthouse built?",
            "The **Pharos of Alexandria**, finished around 280 BC, is the first recorded lighthouse. "
            "It stood about 100 m tall and guided ships into the harbour for centuries.",
        ],
    ),
    ("Sourdough starter schedule", 4, False, ["How often do I feed a starter?", "Once or twice a day at room…"]),
    ("Quarterly budget summary", 40, False, ["Summarise these numbers", "Spending rose 4 % on travel…"]),
    ("asyncio or threads?", 75, False, ["asyncio or threads for a crawler?", "asyncio: the work is I/O-bound…"]),
]
SECOND_VERSION = (
    "The earliest known lighthouse is the **Pharos of Alexandria** in Egypt, completed around 280 BC under "
    "Ptolemy II. Its fire, reflected by mirrors, could reportedly be seen from far out at sea."
)


def populate(db: Path) -> int:
    """Write the sample conversations with the key the app will fetch from the keychain; the lighthouse one's id."""
    from app.core.store.conversation_store import ConversationStore
    from app.core.store.database import open_database
    from app.core.store.keys import load_or_create_key

    conn = open_database(db, load_or_create_key(db))
    store = ConversationStore(conn)
    now = time.time()
    lighthouse = 0
    for title, age, pinned, messages in reversed(SAMPLES):
        cid = store.create_conversation(title)
        parent = None
        for i, text in enumerate(messages):
            parent = store.add_message(cid, parent, "user" if i % 2 == 0 else "assistant", text, model="Gemma 3 270M")
        if title.startswith("Lighthouse"):
            lighthouse = cid
            question = store.path_to(parent)[0].id
            store.add_message(cid, question, "assistant", SECOND_VERSION, model="Gemma 3 270M")
        store.set_pinned(cid, pinned)
        conn.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now - age * DAY, cid))
    conn.close()
    return lighthouse


STARTER_QUESTION = "What is the boiling point of water at sea level?"


def start_app(model: Path | None, samples: bool = True) -> Session:
    """Tern on a throwaway profile holding the sample conversations, the lighthouse one open (or none)."""
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from app.bootstrap import parse_args, start
    from app.core.paths import AppPaths

    paths = AppPaths.default()
    paths.create()
    from app import settings as opts
    from app.settings import Settings

    if samples:
        lighthouse = populate(paths.history_db)
        settings = Settings(paths.settings_file)
        settings.set(opts.MAX_TOKENS, 160)
        settings.set(opts.LAST_CONVERSATION, lighthouse)
        settings.sync()
    args = ["--no-err-windows"] + (["--model", str(model)] if model else [])
    return start(parse_args(args))


def grab_screen(path: Path) -> None:
    """The whole screen, so the picture shows whether the window fits it."""
    QGuiApplication.primaryScreen().grabWindow(0).save(str(path))


def layout_shot(out: Path, model: Path | None, lock: bool) -> int:
    """The window as a first launch lays it out on this screen, or its lock page."""
    from app.bootstrap import shutdown

    session = start_app(model)
    window = session.window
    history = window.history

    def loaded(*_: object) -> None:
        if lock:
            history.finished.connect(lambda *_: window.lock())
            history.locked.connect(lambda: QTimer.singleShot(800, finish))
            history.change_passphrase("correct horse battery staple")
        else:
            QTimer.singleShot(1500, finish)  # the conversation and the memory readings arrive meanwhile

    def finish() -> None:
        grab_screen(out)
        session.app.quit()

    window.model_ready.connect(loaded)
    QTimer.singleShot(120_000, session.app.quit)
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() else 1


def first_launch_shot(out: Path, ask: bool) -> int:
    """A first launch on an empty profile: the welcome page, or the starter's answer to one question."""
    from app.bootstrap import shutdown

    session = start_app(None, samples=False)
    window = session.window

    def loaded(*_: object) -> None:
        if ask:
            window.send_message(STARTER_QUESTION)
        else:
            QTimer.singleShot(2500, finish)  # the welcome page's recommendation arrives meanwhile

    def finish() -> None:
        grab_screen(out)
        session.app.quit()

    window.model_ready.connect(loaded)
    window.answer_finished.connect(lambda _r: QTimer.singleShot(800, finish))
    QTimer.singleShot(180_000, session.app.quit)
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() else 1


def main(out: Path, history_out: Path, model: Path | None) -> int:
    from app.bootstrap import shutdown

    session = start_app(model)
    window = session.window
    window.resize(1280, 780)
    window.move(0, 0)
    pending = list(QUESTIONS)
    pieces = 0
    readings = 0
    shots: list[Path] = []

    def ask(*_: object) -> None:
        if len(pending) == len(QUESTIONS):
            window.new_chat()  # the live chat starts fresh, under "Today"
        if pending:
            window.composer.setPlainText(pending.pop(0))
            window.composer.submit()

    def grab(path: Path) -> None:
        frame = window.frameGeometry()
        shot = QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
        shot.save(str(path))
        shots.append(path)

    def search_history() -> None:
        window.stop()
        window.sidebar.search.setText("lighthouse")
        QTimer.singleShot(400, open_hit)

    def open_hit() -> None:
        rows = window.sidebar.model.rows
        row = next(i for i, r in enumerate(rows) if "earliest" in r.snippet)  # the lighthouse answer's 2nd version
        window.sidebar.list.setCurrentIndex(window.sidebar.model.index(row))
        window.open_conversation(rows[row].conversation_id, rows[row].message_id)
        QTimer.singleShot(600, lambda: (grab(history_out), session.app.quit()))

    def on_reading(*_: object) -> None:
        nonlocal readings
        readings += 1

    def on_update(*_: object) -> None:
        nonlocal pieces
        if not pending and window.busy and not shots:
            pieces += 1
            if pieces >= GRAB_AFTER_UPDATES and readings >= 3:
                grab(out)
                QTimer.singleShot(0, search_history)

    window.model_ready.connect(ask)
    window.answer_finished.connect(lambda _r: QTimer.singleShot(300, ask))
    window.model.dataChanged.connect(on_update)
    window.services.memory.reading.connect(on_reading)
    QTimer.singleShot(120_000, session.app.quit)
    try:
        session.app.exec()
    finally:
        shutdown(session)
    return 0 if out.exists() and history_out.exists() else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path, nargs="?", default=Path("screenshot.png"))
    parser.add_argument("history_out", type=Path, nargs="?", default=Path("history.png"))
    parser.add_argument("--model", type=Path)
    parser.add_argument("--window", type=Path, help="grab the laid-out window (the whole screen) to this file")
    parser.add_argument("--lock", type=Path, help="grab the lock page (the whole screen) to this file")
    parser.add_argument("--first-launch", type=Path, help="grab a first launch (the welcome page) to this file")
    parser.add_argument("--starter-answer", type=Path, help="grab the starter's answer on a first launch")
    options = parser.parse_args()
    if options.first_launch or options.starter_answer:
        sys.exit(first_launch_shot(options.first_launch or options.starter_answer, ask=bool(options.starter_answer)))
    if options.window or options.lock:
        sys.exit(layout_shot(options.window or options.lock, options.model, lock=bool(options.lock)))
    sys.exit(main(options.out, options.history_out, options.model))
