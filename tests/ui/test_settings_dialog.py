"""The settings dialog stores typed values and says when the model must be reloaded."""

from __future__ import annotations

from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.settings import Settings
from app.ui.settings_dialog import SettingsDialog


def test_edits_are_stored(qtbot: QtBot, app_paths: AppPaths) -> None:
    s = Settings(app_paths.settings_file)
    dialog = SettingsDialog(s, training_context=32768)
    qtbot.addWidget(dialog)
    dialog.system_prompt.setPlainText("Answer in French.")
    dialog.temperature.setValue(0.2)
    dialog.max_tokens.setValue(256)
    dialog.accept()
    assert not dialog.reload_needed
    again = Settings(app_paths.settings_file)
    assert s.get(opts.SYSTEM_PROMPT) == "Answer in French."  # kept for the history, not in the file
    assert again.get(opts.SYSTEM_PROMPT) == ""
    assert again.sampling().temperature == 0.2
    assert again.sampling().max_tokens == 256


def test_context_change_asks_for_a_reload_within_the_models_limit(qtbot: QtBot, app_paths: AppPaths) -> None:
    s = Settings(app_paths.settings_file)
    dialog = SettingsDialog(s, training_context=16384)
    qtbot.addWidget(dialog)
    dialog.context_size.setValue(100_000)  # clamped to what the model was trained for
    assert dialog.context_size.value() == 16384
    dialog.accept()
    assert dialog.reload_needed
    assert s.load_options().n_ctx == 16384


def test_restore_defaults(qtbot: QtBot, app_paths: AppPaths) -> None:
    s = Settings(app_paths.settings_file)
    s.set(opts.TEMPERATURE, 1.5)
    dialog = SettingsDialog(s)
    qtbot.addWidget(dialog)
    assert dialog.temperature.value() == 1.5
    dialog._defaults()
    assert dialog.temperature.value() == opts.TEMPERATURE.default
