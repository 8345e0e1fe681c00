"""Screenshot of the local API for the README: its settings, and the request log after an IDE-style conversation.

    tools/screenshot.sh --api resources/local-api.png

Tern starts on a throwaway profile with the endpoint on at its usual port. A
client on its own thread then does what an editor does (lists the models,
then resends a growing conversation three times, streamed), a script with a
wrong key is refused, and the picture is taken with Tools → Local API and the
Network activity tab open side by side.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

TURNS = ("How do I reverse a list in Python?", "And a string?", "Which is faster?")


def ide_conversation(address: str, key: str, model: str) -> None:
    """Three turns of one conversation, resent whole each time, as editors do; then a refused request."""
    import openai

    client = openai.OpenAI(base_url=address, api_key=key, max_retries=0)
    client.models.list()
    messages: list[Any] = []
    for question in TURNS:
        messages.append({"role": "user", "content": question})
        answer = []
        for chunk in client.chat.completions.create(model=model, messages=messages, max_tokens=60, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                answer.append(chunk.choices[0].delta.content)
        messages.append({"role": "assistant", "content": "".join(answer)})
    with contextlib.suppress(openai.AuthenticationError):  # a script with a stale key: refused, and logged
        openai.OpenAI(base_url=address, api_key="not-the-key", max_retries=0).models.list()


def main(out: Path) -> int:
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from app import settings as opts
    from app.bootstrap import parse_args, shutdown, start
    from app.core.paths import AppPaths
    from app.settings import Settings

    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    settings.set(opts.API_ENABLED, True)
    settings.sync()
    session = start(parse_args(["--no-err-windows"]))
    window = session.window
    window.resize(1280, 780)
    api = session.services.api
    status = {"code": 1}

    def converse() -> None:
        state = api.state
        model = api.model_ids()[0]
        thread = threading.Thread(target=ide_conversation, args=(state.address, state.key, model), daemon=True)
        thread.start()

        def wait() -> None:
            if thread.is_alive():
                QTimer.singleShot(200, wait)
            else:
                QTimer.singleShot(500, show)

        wait()

    def show() -> None:
        manager = window.open_models()
        manager.tabs.setCurrentWidget(manager.network)
        manager.resize(1240, 440)
        manager.move(20, 350)
        dialog = window.open_local_api()
        dialog.move(20, 10)
        QTimer.singleShot(800, grab)

    def grab() -> None:
        QGuiApplication.primaryScreen().grabWindow(0).save(str(out))
        status["code"] = 0
        shutdown(session)
        QApplication.quit()

    def ready(*_: object) -> None:
        if api.state.running and api.model_ids():
            converse()
        else:
            QTimer.singleShot(200, ready)

    window.model_ready.connect(ready)
    QApplication.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
