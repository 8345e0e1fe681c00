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


def _label() -> QLabel:
    label = QLabel("–")
    label.setWordWrap(True)
    label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    return label


class ModelInfoPanel(QDockWidget):
    """A dock on the right of the main window."""

    residency_changed = Signal(object)  # Residency chosen by the user

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Model", parent)
        self.setObjectName("model-info")
        self._model: LoadedModel | None = None
        self.headline = _label()
        self.headline.setStyleSheet("font-weight: bold;")
        self.family, self.file, self.quant = _label(), _label(), _label()
        self.ple, self.rss, self.kv, self.buffers, self.context = _label(), _label(), _label(), _label(), _label()
        self.residency = QComboBox()
        for mode, text in RESIDENCY_LABELS.items():
            self.residency.addItem(text, mode)
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
        ):
            form.addRow(name, widget)
        body = QWidget()
        body.setLayout(form)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(body)
        self.setWidget(scroll)
        self.setMinimumWidth(300)

    def set_residency(self, mode: Residency) -> None:
        """Show the current setting."""
        self.residency.setCurrentIndex(self.residency.findData(mode))

    def show_model(self, model: LoadedModel | None) -> None:
        """Static facts about the loaded model."""
        self._model = model
        if model is None:
            for label in (self.headline, self.family, self.file, self.quant, self.ple, self.kv, self.buffers):
                label.setText("–")
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
