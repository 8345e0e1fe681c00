"""A scripted session with the real app, for tests/integration/hostile/test_leak_scan.py.

Usage: python -m tests.integration.hostile.leak_child MODEL DOCUMENT MARKER

Starts Tern as `python -m app` does (logging, crash handler, settings, the
window), then: sets a system prompt, asks a question, attaches DOCUMENT, asks
about it, searches the history, and quits the way the window's close does.
Every piece of user text carries MARKER. Prints "done" when Tern has exited.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from app import bootstrap
from app import settings as opts


def main(model: Path, document: Path, marker: str) -> None:
    args = bootstrap.parse_args(["--model", str(model), "--no-err-windows"])
    session = bootstrap.start(args)
    window = session.window
    window.settings.set(opts.MAX_TOKENS, 32)  # short answers: the scan is about where text goes
    steps: list[str] = []

    def step(name: str) -> None:
        steps.append(name)
        print(name, flush=True)

    def ask(text: str) -> None:
        assert window.send_message(text), "the window did not take the message"

    def both_ready(*_: object) -> None:
        if window.history.is_open and window.models.loaded is not None and not steps:
            step("ready")
            window.settings.set(opts.SYSTEM_PROMPT, f"Always mention {marker}-system.")
            window.session.system_prompt = window.settings.get(opts.SYSTEM_PROMPT)
            ask(f"My locker code is {marker}-message. Say hello.")

    def answered(_result: object) -> None:
        if steps[-1] == "ready":
            step("answered")
            window.documents.attach([document])
        elif steps[-1] == "indexed":
            step("grounded")
            window.history.search(f"{marker}-message")

    def indexed(_doc: int, state: str, reason: str) -> None:
        if state in ("ready", "failed") and steps[-1] == "answered":
            assert state == "ready", reason
            step("indexed")
            ask(f"What does the document say about {marker}-question?")

    def searched(_text: str, hits: list[object]) -> None:
        if steps[-1] == "grounded":
            step(f"found {len(hits)}")
            QTimer.singleShot(500, QApplication.quit)

    window.history.ready.connect(both_ready)
    window.model_ready.connect(both_ready)
    window.answer_finished.connect(answered)
    window.documents.indexer.state_changed.connect(indexed)
    window.history.search_results.connect(searched)
    try:
        session.app.exec()
    finally:
        bootstrap.shutdown(session)
    print("done", flush=True)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
