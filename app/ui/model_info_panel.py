"""The model info panel: what is loaded, where its weights live, and live memory readings."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QDockWidget, QFormLayout, QLabel, QScrollArea, QWidget

from app.core.engine.options import LoadedModel, PlePlacement, Residency
from app.services.memory import MemoryReading
from app.ui import units

RESIDENCY_LABELS = {
    Residency.PLE_ON_DISK: "PLE on disk (recommended)",
    Residency.PLE_IN_RAM: "PLE in RAM (faster first tokens on slow disks)",
    Residency.LOCKED: "Lock model in RAM (PLE stays on disk)",
}
RESIDENCY_TIPS = {
    Residency.PLE_ON_DISK: "Gemma 3n's per-layer embeddings (PLE) stay in the model file and are read from disk "
    "as they are needed. This saves gigabytes of memory and costs little on an SSD. Best for most computers.",
    Residency.PLE_IN_RAM: "The per-layer embeddings are copied into memory. Uses more RAM, but avoids slow first "
    "answers when the model file is on a hard disk or a network drive.",
    Residency.LOCKED: "The rest of the model is locked in memory so the system never swaps it out; the per-layer "
    "embeddings stay on disk. Choose this if answers slow down after other programs have used a lot of memory.",
}
RESIDENCY_TIP = (
    "Where the model's weights are kept while it is loaded. Only Gemma 3n models have per-layer embeddings "
    "(PLE); for other models the choices behave alike. Changing this reloads the model."
)
MIN_WIDTH = 180  # px: narrow enough to leave the chat room on a small screen; the details scroll


def residency_box() -> QComboBox:
    """A list of the places model weights can live, each with a tooltip saying when to pick it."""
    box = QComboBox()
    for mode, text in RESIDENCY_LABELS.items():
        box.addItem(text, mode)
        box.setItemData(box.count() - 1, RESIDENCY_TIPS[mode], Qt.ItemDataRole.ToolTipRole)
    box.setToolTip(RESIDENCY_TIP)
    box.setAccessibleName("Model memory")
    box.setAccessibleDescription(RESIDENCY_TIP)
    return box


def headline(model: LoadedModel, ple_resident: int | None) -> str:
    """E.g. "Effective 2.28B loaded · PLE 2.35B on disk · 3.1 MB paged in"."""
    info = model.info
    if not info.ple_parameters:
        return f"{units.params(info.total_parameters)} parameters loaded · no PLE"
    parts = [f"Effective {units.params(info.effective_parameters)} loaded"]
    if model.ple == PlePlacement.IN_RAM:
        parts.append(f"PLE {units.params(info.ple_parameters)} in RAM")
    else:
        parts.append(f"PLE {units.params(info.ple_parameters)} on disk")
        parts.append(f"{units.size(ple_resident)} paged in" if ple_resident is not None else "paged in: n/a")
    return " · ".join(parts)


def images_text(model: LoadedModel) -> str:
    """E.g. "mmproj-gemma-4-E2B-it-f16.gguf · up to 280 tokens per image", or why images are off."""
    if model.projector:
        return f"{model.projector} · up to {model.image_tokens:,} tokens per image"
    if model.vision_note:
        return f"off: {model.vision_note}"
    return "none (text only)"


def _label() -> QLabel:
    label = QLabel("–")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ModelInfoPanel(QDockWidget):
    """A dock on the right of the main window."""

    residency_changed = Signal(object)  # Residency chosen by the user

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model details", parent)
        self.setObjectName("model-info")
        self._model: LoadedModel | None = None
        self.headline = _label()
        self.headline.setStyleSheet("font-weight: bold;")
        self.family, self.file, self.quant = _label(), _label(), _label()
        self.ple, self.rss, self.kv, self.buffers, self.context = _label(), _label(), _label(), _label(), _label()
        self.images = _label()
        self.residency = residency_box()
        # Qt hands the str-based enum back as a plain str.
        self.residency.activated.connect(lambda i: self.residency_changed.emit(Residency(self.residency.itemData(i))))

        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.addRow(self.headline)
        for name, widget in (
            ("Model", self.family),
            ("File", self.file),
            ("Quantization", self.quant),
            ("Memory", self.residency),
            ("PLE", self.ple),
            ("Process RSS", self.rss),
            ("KV cache", self.kv),
            ("Buffers", self.buffers),
            ("Context", self.context),
            ("Images", self.images),
        ):
            form.addRow(name, widget)
            if widget is not self.residency:
                widget.setAccessibleName(name)
                widget.setAccessibleDescription(f"{name} of the loaded model; the text can be selected and copied.")
        self.headline.setAccessibleName("Loaded model summary")
        self.headline.setAccessibleDescription("Parameters loaded, and where the per-layer embeddings are.")
        body = QWidget()
        body.setLayout(form)
        self.details = QScrollArea()
        self.details.setWidgetResizable(True)
        self.details.setWidget(body)
        self.details.setAccessibleName("Model details")
        self.details.setAccessibleDescription("What is loaded, where its weights live, and live memory readings.")
        self.setWidget(self.details)
        self.setMinimumWidth(MIN_WIDTH)

    def set_residency(self, mode: Residency) -> None:
        """Show the current setting."""
        self.residency.setCurrentIndex(self.residency.findData(mode))

    def show_model(self, model: LoadedModel | None) -> None:
        """Static facts about the loaded model."""
        self._model = model
        if model is None:
            for label in (self.headline, self.family, self.file, self.quant, self.ple, self.kv, self.buffers):
                label.setText("–")
            self.images.setText("–")
            return
        info = model.info
        self.set_residency(model.residency)
        self.family.setText(f"{info.family} ({info.architecture}, {info.block_count} layers)")
        self.file.setText(f"{info.path.name}\n{units.size(info.file_size)} · {info.path.parent}")
        self.quant.setText(", ".join(f"{q} {units.size(b)}" for q, b in list(info.quant_types.items())[:3]))
        self.kv.setText(f"{units.mib(model.buffer_mib('KV'))} · compute {units.mib(model.buffer_mib('compute'))}")
        self.buffers.setText("\n".join(f"{label}: {units.mib(m)}" for label, m in model.buffers) or "–")
        template = "from the file" if model.template_name == "gguf-jinja" else "Gemma turns (fallback)"
        self.context.setText(
            f"{model.n_ctx} tokens · {model.n_threads} threads · loaded in {model.load_ms / 1000:.1f} s\n"
            f"Chat template: {template}"
        )
        self.headline.setText(headline(model, None))
        self.ple.setText(f"{model.ple.value}" if info.ple_bytes else "none")
        self.images.setText(images_text(model))

    def show_reading(self, reading: MemoryReading) -> None:
        """Live numbers from the memory monitor."""
        model = self._model
        if model is not None and reading.model is model:
            info = model.info
            self.headline.setText(headline(model, reading.ple_resident))
            if info.ple_bytes:
                share = (
                    f"{units.size(reading.ple_resident)} resident ({reading.ple_resident / info.ple_bytes:.1%})"
                    if reading.ple_resident is not None
                    else "resident: n/a on this platform"
                )
                self.ple.setText(f"{model.ple.value}\n{units.size(info.ple_bytes)} table · {share}")
        mem = reading.process
        if mem is None:
            self.rss.setText("n/a on this platform")
        else:
            self.rss.setText(
                f"{units.size(mem.rss_file + mem.rss_anon)} = {units.size(mem.rss_file)} file-mapped"
                f" + {units.size(mem.rss_anon)} anonymous\npeak {units.size(mem.peak_rss)}"
            )
