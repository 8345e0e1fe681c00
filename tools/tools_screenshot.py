"""Screenshot of thinking and a tool call in the chat, for the README.

    tools/screenshot.sh --tools resources/tools.png

Tern starts on a throwaway profile with a tiny random-weight Gemma 4 that speaks
Gemma 4's own format (tools/synthetic_gemma.py, tiny-gemma4-real), Think and Tools on.
A random-weight model never thinks or calls a tool by itself, so the turn's first
step follows a llama.cpp grammar: a short thought, then the calculator with 6*7.
The calculator really runs, and the model goes on after its result; the words it
writes are noise. The thought and the tool card are opened before the picture.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "What is 6 times 7? Use the calculator."


def main(out: Path) -> int:
    import llama_cpp

    from tools.synthetic_gemma import TINY_GEMMA4_REAL, ensure_model

    model = ensure_model(TINY_GEMMA4_REAL, "F16", Path.home() / ".cache" / "tern" / "synthetic", Path())
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from app import settings as opts
    from app.bootstrap import parse_args, shutdown, start
    from app.core.engine.llama_engine import find_markers
    from app.core.paths import AppPaths
    from app.core.turn import TurnRequest
    from app.settings import Settings

    vocab = llama_cpp.Llama(str(model), vocab_only=True, verbose=False)
    m = find_markers(vocab)
    vocab.close()
    assert m is not None
    grammar = (
        f'root ::= <[{m.thought_open}]> "thought\\n" "The user wants a product. I will use the calculator." '
        f'<[{m.thought_close}]> <[{m.call_open}]> "call:calculate{{expression:" <[{m.quote}]> "6*7" <[{m.quote}]> "}}" '
        f"<[{m.call_close}]>\n"
    )
    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    for option, value in (
        (opts.MODEL_PATH, str(model)),
        (opts.CONTEXT_SIZE, 2048),
        (opts.MAX_TOKENS, 80),
        (opts.TEMPERATURE, 0.0),
        (opts.THINKING, True),
        (opts.TOOLS, True),
        (opts.TOOLS_ASK, "read_file"),
    ):
        settings.set(option, value)
    settings.sync()
    session = start(parse_args(["--no-err-windows"]))
    window = session.window
    window.resize(1100, 760)
    turns = session.services.turns
    submit = turns.submit

    def through_the_grammar(request: TurnRequest) -> None:  # as the module docstring explains
        submit(replace(request, sampling=replace(request.sampling, grammar=grammar)))

    turns.submit = through_the_grammar  # type: ignore[method-assign]
    status = {"code": 1}

    def ask(*_: object) -> None:
        window.answer_finished.connect(lambda _result: QTimer.singleShot(300, open_parts))
        window.send_message(QUESTION)

    def open_parts() -> None:
        model_rows = window.model
        row = model_rows.rowCount() - 1
        model_rows.toggle_thinking(row)
        for card in model_rows.item(row).tools:
            model_rows.toggle_tool(row, card.id)
        window.view.scroll_to_end()
        QTimer.singleShot(600, grab)

    def grab() -> None:
        QGuiApplication.primaryScreen().grabWindow(0).save(str(out))
        status["code"] = 0
        shutdown(session)
        QApplication.quit()

    window.model_ready.connect(lambda *_: QTimer.singleShot(500, ask))
    QApplication.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
