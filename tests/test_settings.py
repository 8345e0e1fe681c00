"""Preferences are typed, defaulted and versioned."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from app import settings as opts
from app.core.engine.generation import SamplingParams
from app.core.engine.options import LoadOptions
from app.settings import SETTINGS_VERSION, Settings


def test_defaults_and_round_trip(tmp_path: Path, qapp: object) -> None:
    path = tmp_path / "settings.ini"
    s = Settings(path)
    assert s.get(opts.TEMPERATURE) == opts.TEMPERATURE.default
    assert s.model_path() is None
    s.set(opts.TEMPERATURE, 0.3)
    s.set(opts.CONTEXT_SIZE, 4096)
    s.set(opts.SYSTEM_PROMPT, "Be brief.")
    s.sync()
    again = Settings(path)
    assert again.get(opts.TEMPERATURE) == 0.3
    assert again.load_options().n_ctx == 4096
    assert again.sampling().temperature == 0.3
    # User text never goes into the settings file: the history keeps it once it is open.
    assert again.get(opts.SYSTEM_PROMPT) == ""
    assert b"Be brief" not in path.read_bytes()
    assert s.unsaved_private() == {opts.SYSTEM_PROMPT.key: "Be brief."}
    s.use_private({opts.SYSTEM_PROMPT.key: "Be brief."})
    assert s.get(opts.SYSTEM_PROMPT) == "Be brief." and s.unsaved_private() == {}


def test_a_system_prompt_left_in_the_file_moves_to_the_history(tmp_path: Path, qapp: object) -> None:
    path = tmp_path / "settings.ini"
    raw = QSettings(str(path), QSettings.Format.IniFormat)
    raw.setValue(opts.SYSTEM_PROMPT.key, "Answer like a ship's log.")  # as an older version wrote it
    raw.sync()
    s = Settings(path)
    saved: list[tuple[str, str]] = []
    s.keep_private = lambda key, value: saved.append((key, value)) or True
    assert s.unsaved_private() == {opts.SYSTEM_PROMPT.key: "Answer like a ship's log."}
    s.use_private(s.unsaved_private())  # what the history does once it has stored them
    assert b"ship's log" not in path.read_bytes() and b"ship" not in path.read_bytes()
    assert s.get(opts.SYSTEM_PROMPT) == "Answer like a ship's log."
    s.set(opts.SYSTEM_PROMPT, "Be terse.")
    assert saved == [(opts.SYSTEM_PROMPT.key, "Be terse.")] and s.unsaved_private() == {}


def test_bad_values_fall_back_to_defaults(tmp_path: Path, qapp: object) -> None:
    path = tmp_path / "settings.ini"
    raw = QSettings(str(path), QSettings.Format.IniFormat)
    raw.setValue(opts.TEMPERATURE.key, "hot")
    raw.setValue(opts.CONTEXT_SIZE.key, 10)  # below the minimum
    raw.sync()
    s = Settings(path)
    assert s.get(opts.TEMPERATURE) == opts.TEMPERATURE.default
    assert s.get(opts.CONTEXT_SIZE) == opts.CONTEXT_SIZE.default


def test_file_is_stamped_with_its_version(tmp_path: Path, qapp: object) -> None:
    path = tmp_path / "settings.ini"
    Settings(path).sync()
    assert int(QSettings(str(path), QSettings.Format.IniFormat).value("meta/version")) == SETTINGS_VERSION


def test_defaults_are_the_engine_dataclasses_defaults(tmp_path: Path, qapp: object) -> None:
    sampling, load = SamplingParams(), LoadOptions()
    assert opts.TEMPERATURE.default == sampling.temperature
    assert opts.TOP_P.default == sampling.top_p
    assert opts.TOP_K.default == sampling.top_k
    assert opts.REPEAT_PENALTY.default == sampling.repeat_penalty
    assert opts.MAX_TOKENS.default == sampling.max_tokens
    assert opts.CONTEXT_SIZE.default == load.n_ctx
    assert opts.THREADS.default == load.n_threads
    assert opts.GPU_LAYERS.default == load.n_gpu_layers
    assert opts.RESIDENCY.default == load.residency.value
    # A fresh install asks the engine for exactly what a bare request would.
    fresh = Settings(tmp_path / "settings.ini")
    assert fresh.sampling() == sampling
    assert fresh.load_options() == load
