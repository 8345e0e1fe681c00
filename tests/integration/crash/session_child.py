"""The real app, started to be killed: at start-up, or while it indexes documents.

Run by tests/integration/crash/test_kill_at_start_and_indexing.py as a subprocess.

Usage: python -m tests.integration.crash.session_child MODE MODEL [FOLDER]

- `start`: sends a question at the first possible moment (before the history has
  opened), then keeps chatting.
- `index`: attaches FOLDER's documents once the history is open (unless some
  are attached already: then it resumes them), and reports each document's state.

Prints one JSON line per thing the user was told: `saved` (a message is in the
history), `ready` (the history opened), `doc` (a document's new state), and
`store-error` or `model-failed` for anything that went wrong.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app import settings as opts
from app.core.paths import AppPaths
from app.core.store.ref import Ref
from app.services import Services
from app.settings import Settings
from app.ui.main_window import MainWindow


def report(event: str, **fields: object) -> None:
    print(json.dumps({"event": event, "t": time.time(), **fields}), flush=True)


def main(mode: str, model: Path, folder: Path | None) -> None:
    app = QApplication([sys.argv[0]])
    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    settings.set(opts.CONTEXT_SIZE, 1024)
    settings.set(opts.MAX_TOKENS, 48)
    settings.set(opts.MODEL_PATH, str(model))
    services = Services.build(paths)
    services.start()
    window = MainWindow(settings, services, paths, show_dialogs=False)
    history = window.history
    history.ready.connect(lambda: report("ready"))
    history.error.connect(lambda msg: report("store-error", message=msg))
    history.unavailable.connect(lambda exc: report("store-error", message=str(exc)))
    window.model_failed.connect(lambda msg: report("model-failed", message=msg))

    def saved(_turn: int, ref: Ref, _id: int, _versions: tuple[int, ...]) -> None:
        row = window.model.row_of(ref)
        if row >= 0 and window.model.item(row).role == "user":
            report("saved", text=window.model.item(row).text)

    services.turns.saved.connect(saved)
    if mode == "start":
        asked = 0

        def ask(*_: object) -> None:
            nonlocal asked
            if window.send_message(f"Start-up question {os.getpid()}-{asked}"):
                asked += 1

        window.answer_finished.connect(lambda _r: QTimer.singleShot(0, ask))
        QTimer.singleShot(0, ask)  # the first moment the window can take a message
    else:
        assert folder is not None
        indexer = window.documents.indexer
        indexer.state_changed.connect(lambda doc, state, reason: report("doc", id=doc, state=state, reason=reason))

        def attach(documents: int) -> None:
            if not documents:  # nothing attached yet; later starts resume what is there
                window.documents.attach([folder])

        count = "SELECT count(*) FROM documents"
        history.ready.connect(lambda: history.query(lambda s: s.connection.execute(count).fetchone()[0], attach))
    app.exec()


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]) if len(sys.argv) > 3 else None)
