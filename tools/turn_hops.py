"""Which threads one question passes through, from the composer to its first token, in a real window.

    .venv/bin/python tools/turn_hops.py [REPO]

Starts the app's window on a scratch profile (a scratch encrypted history,
the starter model, one attached document so the question is grounded),
wraps the functions on a turn's path to note the thread each runs on, sends
one question and prints, as JSON, the threads in order (repeats collapsed)
with the functions each ran. REPO (default: this checkout) may also be a
checkout from before the services layer, whose turn went through
`app/ui/chat_session.py`, `app/ui/history.py` and `app/workers/`.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NEW_PATH = [
    "app.services.worker_host.WorkerHost._run",
    "app.services.turns.TurnService._run",
    "app.services.saved_turns.SavedTurns.save_start",
    "app.services.saved_turns.SavedTurns.ground",
    "app.services.worker_host.WorkerHost._deliver",
    "app.ui.chat_session.ChatSession._on_saved",
    "app.ui.chat_session.ChatSession._on_sources",
]
OLD_PATH = [
    "app.workers.store_writer._Writer._call",
    "app.workers.inference_worker.InferenceWorker.run_turn",
    "app.ui.history.History._on_done",
    "app.ui.chat_session.ChatSession._ground",
    "app.ui.chat_session.ChatSession._grounded",
]
BOTH = ["app.ui.chat_session.ChatSession.send", "app.ui.chat_session.ChatSession._submit"]
FIRST_TOKEN = "app.ui.chat_session.ChatSession._on_chunk"


def main() -> None:
    """Measure one question and print the JSON report."""
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent).resolve()
    sys.path.insert(0, str(root))
    scratch = Path(tempfile.mkdtemp(prefix="tern-hops-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(scratch / var.lower())
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtCore import QEventLoop, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication([sys.argv[0]])
    from app import settings as opts
    from app.core.paths import AppPaths
    from app.settings import Settings

    new = (root / "app" / "services" / "__init__.py").exists()
    events: list[tuple[str, str]] = []
    state = {"on": False, "done": False}
    for target in (NEW_PATH if new else OLD_PATH) + BOTH + [FIRST_TOKEN]:
        _note_calls(target, events, state)  # before the window connects its slots to them

    from app.ui.main_window import MainWindow

    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    settings.set(opts.CONTEXT_SIZE, 2048)
    settings.set(opts.MAX_TOKENS, 8)
    key = secrets.token_bytes(48)
    window: Any
    if new:
        from app.services import Services

        services = Services.build(paths)
        services.start()
        window = MainWindow(settings, services, paths, show_dialogs=False, open_history=False)
        window.history.open_with_key(key)
    else:
        inference = importlib.import_module("app.workers.inference_worker").InferenceThread(paths.models)
        inference.start()
        window = MainWindow(settings, inference, paths, show_dialogs=False, open_history=False)  # type: ignore[arg-type]
        window.history._open(lambda: key)

    def wait(done: Callable[[], bool], timeout_s: float = 120) -> None:
        loop, timer = QEventLoop(), QTimer()
        timer.timeout.connect(lambda: loop.quit() if done() else None)
        timer.start(5)
        deadline = time.monotonic() + timeout_s
        while not done() and time.monotonic() < deadline:
            loop.exec()
        timer.stop()

    wait(lambda: window.history.is_open)
    loaded: list[object] = []
    window.model_ready.connect(loaded.append)
    window.load_model(None)
    wait(lambda: bool(loaded))
    notes = scratch / "notes.txt"
    notes.write_text("The keeper of the Skerry Point light was called Edda.\n" * 20)
    states: list[str] = []
    window.documents.indexer.state_changed.connect(lambda _d, s, _r: states.append(s))
    window.documents.attach([notes])
    wait(lambda: "ready" in states)
    time.sleep(0.5)
    state["on"] = True
    window.send_message("Who kept the light?")
    wait(lambda: state["done"])
    steps: list[tuple[str, list[str]]] = []
    for thread, name in events:
        thread = "GUI" if thread == threading.main_thread().name else thread
        if steps and steps[-1][0] == thread:
            steps[-1][1].append(name)
        else:
            steps.append((thread, [name]))
    print(json.dumps({"layout": "services" if new else "workers", "threads": [t for t, _ in steps], "steps": steps}))
    app.processEvents()
    os._exit(0)  # the report is out; the threads need no orderly end


def _note_calls(target: str, events: list[tuple[str, str]], state: dict[str, bool]) -> None:
    """Wrap a method (keeping its name and slot attributes) to note the thread each call runs on."""
    module, cls, method = target.rsplit(".", 2)
    klass = getattr(importlib.import_module(module), cls)
    original = getattr(klass, method)

    @functools.wraps(original)
    def noted(*args: Any, **kwargs: Any) -> Any:
        if state["on"] and not state["done"]:
            label = f"{cls}.{method}"
            if label == "WorkerHost._run":
                label += f"({args[1].label})"
            events.append((threading.current_thread().name, label))
            state["done"] = target == FIRST_TOKEN
        return original(*args, **kwargs)

    setattr(klass, method, noted)


if __name__ == "__main__":
    main()
