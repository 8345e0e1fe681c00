"""Preferences: system prompt, how answers are sampled, thinking and tools, and how the model is loaded.

Every control has a tooltip in plain words (what it does, when to change it);
the same text is its accessible description. The form scrolls, so the dialog
fits a small or highly scaled screen.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QLabel,
    QPlainTextEdit,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from app import settings as opts
from app.core.engine.options import Residency
from app.settings import Option, Settings
from app.ui.image_settings import ImagesGroup
from app.ui.model_info_panel import residency_box
from app.ui.tools_settings import ToolsGroup

TIPS = {
    "system_prompt": "Instructions the model reads before every conversation, such as the tone to take or the "
    "language to answer in. Applies to the open conversation and to new ones.",
    "temperature": "How adventurous the wording is. Low (0.1–0.3) gives focused, repeatable answers, good for "
    "facts and code; high (1.0 and up) gives more varied, creative answers with more mistakes. "
    "0 always picks the most likely word.",
    "top_p": "Each word is picked only from the most likely ones, whose chances add up to this share. Lower it "
    "(say 0.8) to keep answers on track; 1.0 turns the limit off. Change the temperature first: this rarely "
    "needs changing.",
    "top_k": "Each word is picked only from this many of the most likely ones. Lower is safer and plainer; "
    "Off (0) removes the limit. Rarely needs changing.",
    "repeat_penalty": "Makes words the answer has already used less likely to come again. Raise it a little "
    "(1.15–1.3) if answers repeat themselves; 1.0 turns it off. Too high, and answers avoid words they need.",
    "max_tokens": "The longest an answer may be, in tokens (a token is about three quarters of an English word). "
    "An answer that reaches it stops mid-sentence: raise it for long texts, lower it for short replies.",
    "context_size": "How much of the conversation, and of attached documents, the model can see at once, in "
    "tokens. Larger remembers more of a long chat but uses more memory and loads more slowly; it cannot exceed "
    "what the model was trained for. Changing it reloads the model.",
    "source_wait": "The longest you will wait, before an answer starts, for the model to read new passages from "
    "attached documents. Tern measures how fast this computer reads and gives the model no more than it can read "
    "in this time (at most half the context). Longer finds more; shorter answers sooner. Passages already read in "
    "the conversation cost nothing again.",
    "threads": "How many processor cores work on each answer. Automatic picks a good number for this computer; "
    "choose fewer to keep the computer responsive for other work. Changing it reloads the model.",
    "gpu_layers": "How many of the model's layers run on the graphics card, when llama.cpp was built with CUDA, "
    "Metal or Vulkan. More is faster until the card's memory is full; None keeps everything on the processor. "
    "Changing it reloads the model.",
}
SCREEN_SHARE = 0.9  # of the screen's free area the dialog may take at most; the form scrolls beyond it


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


def _row(form: QFormLayout, text: str, field: QWidget, tip: str) -> QLabel:
    """A labelled row whose label and field both explain themselves; returns the label."""
    label = QLabel(text)
    label.setBuddy(field)
    label.setToolTip(tip)
    field.setToolTip(tip)
    field.setAccessibleName(text)
    field.setAccessibleDescription(tip)
    form.addRow(label, field)
    return label


def _group(title: str, form: QFormLayout) -> QGroupBox:
    group = QGroupBox(title)
    group.setLayout(form)
    return group


class SettingsDialog(QDialog):
    """Edits the preferences; `reload_needed` says whether the model must be reloaded."""

    def __init__(
        self,
        settings: Settings,
        training_context: int = 0,
        parent: QWidget | None = None,
        reading_tok_s: float | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self._settings = settings
        self.reload_needed = False

        self.system_prompt = QPlainTextEdit()
        self.system_prompt.setPlaceholderText("For example: You are a concise assistant. Answer in English.")
        self.system_prompt.setFixedHeight(90)
        self.system_prompt.setTabChangesFocus(True)
        self.temperature = _double(opts.TEMPERATURE, 0.05)
        self.top_p = _double(opts.TOP_P, 0.01)
        self.top_k = _int(opts.TOP_K)
        self.top_k.setSpecialValueText("Off")
        self.repeat_penalty = _double(opts.REPEAT_PENALTY, 0.05)
        self.max_tokens = _int(opts.MAX_TOKENS, 64)
        self.context_size = _int(opts.CONTEXT_SIZE, 1024)
        if training_context:
            self.context_size.setMaximum(training_context)
        self.context_size.setSuffix(" tokens")
        self.threads = _int(opts.THREADS)
        self.threads.setSpecialValueText("Automatic")
        self.gpu_layers = _int(opts.GPU_LAYERS)
        self.gpu_layers.setSpecialValueText("None (CPU only)")
        self.residency = residency_box()
        self.residency.setCurrentIndex(self.residency.findData(settings.residency()))
        self.source_wait = _int(opts.SOURCE_WAIT_S, 15)
        self.source_wait.setSuffix(" s")
        self.source_wait.setValue(settings.get(opts.SOURCE_WAIT_S))
        self.tools_group = ToolsGroup()
        self.tools_group.load(settings)
        self.images_group = ImagesGroup(reading_tok_s)
        self.images_group.load(settings)

        answers, documents, model = QFormLayout(), QFormLayout(), QFormLayout()
        labels = [
            _row(answers, "System prompt", self.system_prompt, TIPS["system_prompt"]),
            _row(answers, "Temperature", self.temperature, TIPS["temperature"]),
            _row(answers, "Top-p", self.top_p, TIPS["top_p"]),
            _row(answers, "Top-k", self.top_k, TIPS["top_k"]),
            _row(answers, "Repeat penalty", self.repeat_penalty, TIPS["repeat_penalty"]),
            _row(answers, "Max tokens per answer", self.max_tokens, TIPS["max_tokens"]),
            _row(documents, "Longest wait to read passages", self.source_wait, TIPS["source_wait"]),
            _row(model, "Context size", self.context_size, TIPS["context_size"]),
            _row(model, "CPU threads", self.threads, TIPS["threads"]),
            _row(model, "GPU layers", self.gpu_layers, TIPS["gpu_layers"]),
            _row(model, "Model memory", self.residency, self.residency.toolTip()),
        ]
        widest = max(label.sizeHint().width() for label in labels)
        for label in labels:  # both groups' fields start at one edge
            label.setMinimumWidth(widest)
        hint = QLabel("Changing the context size, threads, GPU layers, model memory or images reloads the model.")
        hint.setWordWrap(True)
        hint.setStyleSheet("color: palette(mid);")

        body = QWidget()
        column = QVBoxLayout(body)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(_group("Answers", answers))
        column.addWidget(_group("Documents", documents))
        column.addWidget(self.tools_group)
        column.addWidget(self.images_group)
        column.addWidget(_group("Model", model))
        column.addWidget(hint)
        column.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # the fields take focus; it scrolls to the focused one
        scroll.setWidget(body)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok
            | QDialogButtonBox.StandardButton.Cancel
            | QDialogButtonBox.StandardButton.RestoreDefaults
        )
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        defaults = buttons.button(QDialogButtonBox.StandardButton.RestoreDefaults)
        defaults.setToolTip("Put every setting here back to how a fresh install has it (applied with OK).")
        defaults.clicked.connect(self._defaults)
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(buttons)
        self.gpu_layers.setValue(settings.get(opts.GPU_LAYERS))
        self._show(
            settings.get(opts.SYSTEM_PROMPT),
            settings.get(opts.TEMPERATURE),
            settings.get(opts.TOP_P),
            settings.get(opts.TOP_K),
            settings.get(opts.REPEAT_PENALTY),
            settings.get(opts.MAX_TOKENS),
            settings.get(opts.CONTEXT_SIZE),
            settings.get(opts.THREADS),
        )
        wanted = QSize(
            max(520, body.sizeHint().width() + 40), body.sizeHint().height() + buttons.sizeHint().height() + 40
        )
        self.resize(wanted.boundedTo(self._room()))

    def _room(self) -> QSize:
        """The most of the screen the dialog may take."""
        screen = self.screen() or QGuiApplication.primaryScreen()
        return screen.availableGeometry().size() * SCREEN_SHARE

    def _show(
        self,
        system: str,
        temp: float,
        top_p: float,
        top_k: int,
        repeat_penalty: float,
        max_tokens: int,
        n_ctx: int,
        threads: int,
    ) -> None:
        self.system_prompt.setPlainText(system)
        self.temperature.setValue(temp)
        self.top_p.setValue(top_p)
        self.top_k.setValue(top_k)
        self.repeat_penalty.setValue(repeat_penalty)
        self.max_tokens.setValue(max_tokens)
        self.context_size.setValue(n_ctx)
        self.threads.setValue(threads)

    def _defaults(self) -> None:
        self._show(
            opts.SYSTEM_PROMPT.default,
            opts.TEMPERATURE.default,
            opts.TOP_P.default,
            opts.TOP_K.default,
            opts.REPEAT_PENALTY.default,
            opts.MAX_TOKENS.default,
            opts.CONTEXT_SIZE.default,
            opts.THREADS.default,
        )
        self.gpu_layers.setValue(opts.GPU_LAYERS.default)
        self.source_wait.setValue(opts.SOURCE_WAIT_S.default)
        self.tools_group.defaults()
        self.images_group.defaults()
        self.residency.setCurrentIndex(self.residency.findData(Residency(opts.RESIDENCY.default)))

    def accept(self) -> None:
        """Store the values."""
        s = self._settings
        self.reload_needed = (
            self.context_size.value() != s.get(opts.CONTEXT_SIZE)
            or self.threads.value() != s.get(opts.THREADS)
            or self.residency.currentData() != s.residency()
            or self.gpu_layers.value() != s.get(opts.GPU_LAYERS)
            or self.images_group.changed(s)
        )
        s.set(opts.GPU_LAYERS, self.gpu_layers.value())
        s.set(opts.RESIDENCY, Residency(self.residency.currentData()).value)
        s.set(opts.SYSTEM_PROMPT, self.system_prompt.toPlainText())
        s.set(opts.TEMPERATURE, self.temperature.value())
        s.set(opts.TOP_P, self.top_p.value())
        s.set(opts.TOP_K, self.top_k.value())
        s.set(opts.REPEAT_PENALTY, self.repeat_penalty.value())
        s.set(opts.MAX_TOKENS, self.max_tokens.value())
        s.set(opts.CONTEXT_SIZE, self.context_size.value())
        s.set(opts.THREADS, self.threads.value())
        s.set(opts.SOURCE_WAIT_S, self.source_wait.value())
        self.tools_group.store(s)
        self.images_group.store(s)
        s.sync()
        super().accept()
