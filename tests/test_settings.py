"""Preferences are typed, defaulted and versioned."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings

from app import settings as opts
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
    assert again.get(opts.SYSTEM_PROMPT) == "Be brief."


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
