"""The turn service's inference thread, through its queued signals, with the real model.

Moved from tests/workers/test_inference_worker.py.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from PySide6.QtCore import QCoreApplication, QObject, Slot
from pytestqt.qtbot import QtBot

from app.core.chat.message import ChatMessage
from app.core.engine.generation import SamplingParams, StopReason
from app.core.engine.llama_engine import LoadOptions
from app.core.paths import AppPaths
from app.core.turn import TurnRequest, TurnResult
from app.services.turns import LoadRequest, TurnService
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma


class Recorder(QObject):
    """Receives the worker's signals on the GUI thread, as the window does."""

    def __init__(self, inference: TurnService) -> None:
        super().__init__()
        self.loaded: list[object] = []
        self.failed: list[tuple[str, object]] = []
        self.chunks: list[str] = []
        self.results: list[TurnResult] = []
        self.on_chunk_hook = lambda: None
        w = inference
        w.model_loaded.connect(self.on_loaded)
        w.load_failed.connect(self.on_failed)
        w.chunk.connect(self.on_chunk)
        w.turn_finished.connect(self.on_finished)

    @Slot(object)
    def on_loaded(self, loaded: object) -> None:
        self.loaded.append(loaded)

    @Slot(str, object)
    def on_failed(self, message: str, still: object) -> None:
        self.failed.append((message, still))

    @Slot(int, str)
    def on_chunk(self, _turn: int, text: str) -> None:
        self.chunks.append(text)
        self.on_chunk_hook()

    @Slot(object)
    def on_finished(self, result: TurnResult) -> None:
        self.results.append(result)


@pytest.fixture
def inference(qtbot: QtBot, app_paths: AppPaths, starter_model: Path) -> Iterator[TurnService]:
    service = TurnService(app_paths.models)
    service.start()
    yield service
    assert service.shutdown()


@pytest.fixture
def rec(qtbot: QtBot, inference: TurnService, starter_model: Path) -> Recorder:
    recorder = Recorder(inference)
    inference.load(LoadRequest(starter_model, LoadOptions(n_ctx=1024)))
    qtbot.waitUntil(lambda: bool(recorder.loaded), timeout=60_000)
    return recorder


def ask(turn_id: int, text: str, max_tokens: int = 16) -> TurnRequest:
    return TurnRequest(
        turn_id, (ChatMessage("user", text),), sampling=SamplingParams(temperature=0.0, max_tokens=max_tokens)
    )


def test_a_turn_streams_chunks_then_finishes(qtbot: QtBot, inference: TurnService, rec: Recorder) -> None:
    inference.submit(ask(1, "Name three colours."))
    qtbot.waitUntil(lambda: bool(rec.results), timeout=60_000)
    result = rec.results[0]
    assert result.turn_id == 1
    assert len(rec.chunks) == result.stats.completion_tokens > 0


def test_cancel_ends_the_turn_with_partial_text(qtbot: QtBot, inference: TurnService, rec: Recorder) -> None:
    rec.on_chunk_hook = lambda: inference.cancel() if len(rec.chunks) == 3 else None  # on the GUI thread, like Stop
    inference.submit(ask(2, "Tell a very long story.", max_tokens=2000))
    qtbot.waitUntil(lambda: bool(rec.results), timeout=60_000)
    result = rec.results[0]
    assert result.stats.stop_reason == StopReason.CANCELLED
    # Chunks are queued, so a few more may have been produced before the flag was seen.
    assert 3 <= result.stats.completion_tokens < 2000


def test_a_bad_file_fails_clearly_and_the_worker_lives_on(
    qtbot: QtBot, inference: TurnService, rec: Recorder, tmp_path: Path
) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(10_000))
    inference.load(LoadRequest(junk))
    qtbot.waitUntil(lambda: bool(rec.failed), timeout=30_000)
    message, still_loaded = rec.failed[0]
    assert "not a GGUF model" in message
    assert still_loaded is not None and still_loaded.info.architecture == "gemma3"  # type: ignore[attr-defined]
    inference.submit(ask(3, "Hello"))
    qtbot.waitUntil(lambda: bool(rec.results), timeout=60_000)


def test_shutdown_during_generation_is_prompt(qtbot: QtBot, inference: TurnService, rec: Recorder) -> None:
    inference.submit(ask(4, "Write a long essay.", max_tokens=5000))
    qtbot.waitUntil(lambda: bool(rec.chunks), timeout=60_000)
    assert inference.shutdown(5.0)
    QCoreApplication.processEvents()  # deliver what the worker sent before it stopped
    assert len(rec.results) == 1
    assert rec.results[0].stats.stop_reason == StopReason.CANCELLED


def test_a_failed_turn_logs_no_user_text(
    qtbot: QtBot, inference: TurnService, tmp_path: Path, starter_model: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A template that quotes the user's message in its refusal: the user sees it, the log does not.
    source = (
        "{% if 'marker' in messages[-1]['content'] %}{{ raise_exception('Cannot answer: ' + messages[-1]['content']) }}"
        "{% endif %}{% for m in messages %}<start_of_turn>{{ m['role'] }}\n{{ m['content'] }}<end_of_turn>\n"
        "{% endfor %}"
    )
    model = write_gemma(tmp_path / "quoting.gguf", TINY_GEMMA4, starter_model, chat_template=source)
    recorder = Recorder(inference)
    failures: list[str] = []
    inference.turn_failed.connect(lambda _turn, message: failures.append(message))
    inference.load(LoadRequest(model, LoadOptions(n_ctx=256)))
    qtbot.waitUntil(lambda: bool(recorder.loaded or recorder.failed), timeout=60_000)
    assert recorder.loaded, recorder.failed
    with caplog.at_level(logging.INFO):
        inference.submit(ask(9, "my bank PIN is 4471-marker"))
        qtbot.waitUntil(lambda: bool(failures), timeout=60_000)
    assert "4471-marker" in failures[0]  # shown to the user
    assert "TemplateError" in caplog.text and "4471-marker" not in caplog.text
