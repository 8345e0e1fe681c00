"""The model info panel and its live meter, fed by a sampling thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from pytestqt.qtbot import QtBot

from app.core.engine.llama_engine import LlamaEngine, LoadedModel, LoadOptions
from app.services.memory import MemoryMonitor, MemoryReading
from app.ui import units
from app.ui.model_info_panel import ModelInfoPanel, headline
from tools.synthetic_gemma import TINY_GEMMA4, write_gemma


@pytest.fixture(scope="module")
def gemma4(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Iterator[LoadedModel]:
    path = write_gemma(tmp_path_factory.mktemp("g4") / "tiny-gemma4.gguf", TINY_GEMMA4, starter_model)
    engine = LlamaEngine()
    yield engine.load(path, LoadOptions(n_ctx=512))
    engine.unload()


def test_units() -> None:
    assert units.params(2_284_000_000) == "2.28B"
    assert units.params(268_098_176) == "268M"
    assert units.size(3_100_000) == "3.1 MB"
    assert units.mib(2380) == "2.50 GB"


def test_meter_samples_off_the_gui_thread(qtbot: QtBot, gemma4: LoadedModel) -> None:
    monitor = MemoryMonitor(interval_ms=50)
    readings: list[MemoryReading] = []
    monitor.reading.connect(readings.append)
    monitor.start()
    try:
        monitor.set_model(gemma4)
        qtbot.waitUntil(lambda: any(r.model is gemma4 for r in readings), timeout=5000)
    finally:
        monitor.shutdown()
    reading = next(r for r in readings if r.model is gemma4)
    # Sampled on the monitor's thread, delivered to this (GUI) thread by a queued signal.
    assert all(r.thread_id != threading.main_thread().ident for r in readings)
    assert reading.ple_resident == 0  # PLE on disk, nothing generated yet
    assert reading.process is not None and reading.process.rss_file > 0


def test_panel_shows_effective_and_ple(qtbot: QtBot, gemma4: LoadedModel) -> None:
    panel = ModelInfoPanel()
    qtbot.addWidget(panel)
    panel.show_model(gemma4)
    assert panel.family.text().startswith("Gemma 4")
    assert "CPU_Mapped model" in panel.buffers.text()
    assert panel.kv.text() != "–"
    reading = MemoryReading(gemma4, 3_100_000, None, 0)
    panel.show_reading(reading)
    assert panel.headline.text() == "Effective 1.5M loaded · PLE 5.2M on disk · 3.1 MB paged in"
    assert "29.6%" in panel.ple.text()  # 3.1 MB of the 10.5 MB table
    assert panel.rss.text() == "n/a on this platform"
    assert headline(gemma4, None).endswith("paged in: n/a")


def test_panel_says_whether_the_model_sees_images(qtbot: QtBot, gemma4: LoadedModel) -> None:
    panel = ModelInfoPanel()
    qtbot.addWidget(panel)
    panel.show_model(gemma4)
    assert panel.images.text() == "none (text only)"
    panel.show_model(replace(gemma4, projector="mmproj-tiny-gemma-4-it-f16.gguf", image_tokens=280))
    assert panel.images.text() == "mmproj-tiny-gemma-4-it-f16.gguf · up to 280 tokens per image"
    refused = "This image projector is for a model whose embeddings are 640 wide; the loaded model's are 64."
    panel.show_model(replace(gemma4, vision_note=refused))
    assert panel.images.text() == f"off: {refused}"
    panel.show_model(None)
    assert panel.images.text() == "–"
