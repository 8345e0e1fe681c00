"""Preferences: system prompt, sampling, context size."""

from __future__ import annotations

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import settings as opts
from app.core.engine.options import Residency
from app.settings import Option, Settings
from app.ui.model_info_panel import RESIDENCY_LABELS


def _double(option: Option[float], step: float) -> QDoubleSpinBox:
    box = QDoubleSpinBox()
    box.setRange(option.minimum or 0.0, option.maximum or 1.0)
    box.setSingleStep(step)
    box.setDecimals(2)
    return box


def _int(option: Option[int], step: int = 1) -> QSpinBox:
    box = QSpinBox()
    box.setRange(int(option.minimum or 0), int(option.maximum or 1 << 30))
    box.setSingleStep(step)
    return box


class SettingsDialog(QDialog):
    """Edits the preferences; `reload_needed` says whether the model must be reloaded."""

    def __init__(self, settings: Settings, training_context: int = 0, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setMinimumWidth(460)
        self._settings = settings
        self.reload_needed = False

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("For example: You are a concise assistant. Answer in English.")
        self.system_prompt.setFixedHeight(90)
        self.temperature = _double(opts.TEMPERATURE, 0.05)
        self.top_p = _double(opts.TOP_P, 0.01)
        self.max_tokens = _int(opts.MAX_TOKENS, 64)
        self.context_size = _int(opts.CONTEXT_SIZE, 1024)
        if training_context:
            self.context_size.setMaximum(training_context)
        self.context_size.setSuffix(" tokens")
        self.threads = _int(opts.THREADS)
        self.threads.setSpecialValueText("Automatic")
        self.gpu_layers = _int(opts.GPU_LAYERS)
        self.gpu_layers.setSpecialValueText("None (CPU only)")
        self.gpu_layers.setToolTip("Layers to offload when llama.cpp was built with CUDA, Metal or Vulkan.")
        self.residency = QComboBox()
        for mode, text in RESIDENCY_LABELS.items():
            self.residency.addItem(text, mode)
        self.residency.setCurrentIndex(self.residency.findData(settings.residency()))

        form = QFormLayout()
        form.addRow("System prompt", self.system_prompt)
        form.addRow("Temperature", self.temperature)
        form.addRow("Top-p", self.top_p)
        form.addRow("Max tokens per answer", self.max_tokens)
        form.addRow("Context size", self.context_size)
        form.addRow("CPU threads", self.threads)
        form.addRow("GPU layers", self.gpu_layers)
        form.addRow("Model memory", self.residency)
        hint = QLabel("Changing the context size, threads, GPU layers or model memory reloads the model.")
        hint.setStyleSheet("color: palette(mid);")
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults).clicked.connect(self._defaults)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(hint)
        layout.addWidget(buttons)
        self.gpu_layers.setValue(settings.get(opts.GPU_LAYERS))
        self._show(
            settings.get(opts.SYSTEM_PROMPT),
            settings.get(opts.TEMPERATURE),
            settings.get(opts.TOP_P),
            settings.get(opts.MAX_TOKENS),
            settings.get(opts.CONTEXT_SIZE),
            settings.get(opts.THREADS),
        )

    def _show(self, system: str, temp: float, top_p: float, max_tokens: int, n_ctx: int, threads: int) -> None:
        self.system_prompt.setPlainText(system)
        self.temperature.setValue(temp)
        self.top_p.setValue(top_p)
        self.max_tokens.setValue(max_tokens)
        self.context_size.setValue(n_ctx)
        self.threads.setValue(threads)

    def _defaults(self) -> None:
        self._show(
            *(
                o.default
                for o in (  # type: ignore[arg-type]
                    opts.SYSTEM_PROMPT,
                    opts.TEMPERATURE,
                    opts.TOP_P,
                    opts.MAX_TOKENS,
                    opts.CONTEXT_SIZE,
                    opts.THREADS,
                )
            )
        )

    def accept(self) -> None:
        """Store the values."""
        s = self._settings
        self.reload_needed = (
            self.context_size.value() != s.get(opts.CONTEXT_SIZE)
            or self.threads.value() != s.get(opts.THREADS)
            or self.residency.currentData() != s.residency()
            or self.gpu_layers.value() != s.get(opts.GPU_LAYERS)
        )
        s.set(opts.GPU_LAYERS, self.gpu_layers.value())
        s.set(opts.RESIDENCY, Residency(self.residency.currentData()).value)
        s.set(opts.SYSTEM_PROMPT, self.system_prompt.toPlainText())
        s.set(opts.TEMPERATURE, self.temperature.value())
        s.set(opts.TOP_P, self.top_p.value())
        s.set(opts.MAX_TOKENS, self.max_tokens.value())
        s.set(opts.CONTEXT_SIZE, self.context_size.value())
        s.set(opts.THREADS, self.threads.value())
        s.sync()
        super().accept()
