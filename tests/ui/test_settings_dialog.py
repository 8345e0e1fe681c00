"""The settings dialog stores typed values and says when the model must be reloaded."""

from __future__ import annotations

from PySide6.QtCore import Qt
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


def test_every_setting_explains_itself(qtbot: QtBot, app_paths: AppPaths) -> None:
    dialog = SettingsDialog(Settings(app_paths.settings_file))
    qtbot.addWidget(dialog)
    fields = {
        "System prompt": dialog.system_prompt,
        "Temperature": dialog.temperature,
        "Top-p": dialog.top_p,
        "Top-k": dialog.top_k,
        "Repeat penalty": dialog.repeat_penalty,
        "Max tokens per answer": dialog.max_tokens,
        "Context size": dialog.context_size,
        "CPU threads": dialog.threads,
        "GPU layers": dialog.gpu_layers,
        "Model memory": dialog.residency,
    }
    for name, field in fields.items():
        tip = field.toolTip()
        assert len(tip.split()) >= 12, f"{name}: {tip!r} says too little"  # what it does and when to change it
        assert field.accessibleName() == name and field.accessibleDescription() == tip
    assert "reloads the model" in dialog.context_size.toolTip()
    assert "PLE" in dialog.residency.toolTip()
    for i in range(dialog.residency.count()):  # each place the weights can live says when to choose it
        assert dialog.residency.itemData(i, Qt.ItemDataRole.ToolTipRole)
    assert len({f.toolTip() for f in fields.values()}) == len(fields)  # no copied text


def test_top_k_and_repeat_penalty_are_stored(qtbot: QtBot, app_paths: AppPaths) -> None:
    s = Settings(app_paths.settings_file)
    dialog = SettingsDialog(s)
    qtbot.addWidget(dialog)
    dialog.top_k.setValue(20)
    dialog.repeat_penalty.setValue(1.25)
    dialog.accept()
    again = Settings(app_paths.settings_file).sampling()
    assert (again.top_k, again.repeat_penalty) == (20, 1.25)
    dialog = SettingsDialog(Settings(app_paths.settings_file))
    qtbot.addWidget(dialog)
    assert (dialog.top_k.value(), dialog.repeat_penalty.value()) == (20, 1.25)
    dialog._defaults()
    assert (dialog.top_k.value(), dialog.repeat_penalty.value()) == (opts.TOP_K.default, opts.REPEAT_PENALTY.default)


def test_the_dialog_fits_the_screen(qtbot: QtBot, app_paths: AppPaths) -> None:
    dialog = SettingsDialog(Settings(app_paths.settings_file))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    room = dialog.screen().availableGeometry().size()
    assert dialog.width() <= room.width() and dialog.height() <= room.height()
    assert dialog.minimumSizeHint().height() < 384  # the form scrolls: it fits 1366×768 at 200 %


def test_image_detail_shows_its_cost_and_reloads_the_model(qtbot: QtBot, app_paths: AppPaths) -> None:
    s = Settings(app_paths.settings_file)
    dialog = SettingsDialog(s, training_context=8192, reading_tok_s=140.0)
    qtbot.addWidget(dialog)
    group = dialog.images_group
    assert group.enabled.isChecked() and group.detail.currentData() == 0  # the projector's own default
    group.detail.setCurrentIndex(group.detail.findData(560))
    assert "560 tokens" in group.cost.text() and "about 4.0 s" in group.cost.text()  # 560 / 140 tokens a second
    dialog.accept()
    assert dialog.reload_needed
    assert s.load_options().image_tokens == 560 and s.load_options().images
    again = SettingsDialog(s)
    qtbot.addWidget(again)
    again.images_group.enabled.setChecked(False)
    assert not again.images_group.detail.isEnabled()
    assert "shows here once" in again.images_group.cost.text()  # no reading speed measured yet
    again.accept()
    assert again.reload_needed and not s.load_options().images
