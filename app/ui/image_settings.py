"""Settings → Images: whether a model's image projector loads with it, and how much detail an image gets."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QComboBox, QFormLayout, QGroupBox, QLabel, QWidget

from app import settings as opts
from app.settings import Settings

# Tokens per image. Gemma 4's projector takes any budget in its range (70–1120); Gemma 3 and 3n
# always use their own fixed count (256), whatever is chosen here.
DETAIL = (
    (0, "Model default"),
    (70, "Low (70 tokens)"),
    (140, "Reduced (140 tokens)"),
    (280, "Standard (280 tokens)"),
    (560, "High (560 tokens)"),
    (1120, "Highest (1,120 tokens)"),
)
TIPS = {
    "images": "When a model has an image projector (an mmproj file in its folder), load it too, so you can "
    "send the model pictures. It takes the projector's memory.",
    "detail": "How many tokens of the context one image takes. More tokens let the model see finer detail "
    "(small text in a screenshot), and cost more reading time per image. Changing it reloads the model.",
}


class ImagesGroup(QGroupBox):
    """The image preferences; `reading_tok_s` (this machine's measured reading speed) prices each detail."""

    def __init__(self, reading_tok_s: float | None = None, parent: QWidget | None = None) -> None:
        super().__init__("Images", parent)
        self.enabled = QCheckBox("Load a model's image projector when it has one")
        self.enabled.setToolTip(TIPS["images"])
        self.detail = QComboBox()
        for tokens, label in DETAIL:
            self.detail.addItem(label, tokens)
        self.detail.setToolTip(TIPS["detail"])
        self.detail.setAccessibleName("Image detail")
        self.cost = QLabel()
        self.cost.setWordWrap(True)
        self.cost.setStyleSheet("color: palette(mid);")
        self._reading = reading_tok_s
        self.detail.currentIndexChanged.connect(self._show_cost)
        self.enabled.toggled.connect(self.detail.setEnabled)
        form = QFormLayout(self)
        form.addRow(self.enabled)
        form.addRow("Image detail", self.detail)
        form.addRow(self.cost)

    def _show_cost(self) -> None:
        tokens = int(self.detail.currentData() or 0)
        if not tokens:
            self.cost.setText("Each image takes the number of tokens its projector is made for (280 for Gemma 4).")
            return
        if self._reading:
            seconds = tokens / self._reading
            when = f"about {seconds:.1f} s" if seconds < 60 else f"about {seconds / 60:.1f} min"
            self.cost.setText(
                f"Each image takes {tokens:,} tokens of context: {when} of reading at the speed this model "
                "last read a long prompt, plus encoding the image once."
            )
        else:
            self.cost.setText(
                f"Each image takes {tokens:,} tokens of context; the time it costs shows here once the model "
                "has read a long prompt."
            )

    def show_values(self, enabled: bool, tokens: int) -> None:
        self.enabled.setChecked(enabled)
        self.detail.setEnabled(enabled)
        index = self.detail.findData(tokens)
        self.detail.setCurrentIndex(index if index >= 0 else 0)
        self._show_cost()

    def load(self, settings: Settings) -> None:
        self.show_values(settings.get(opts.IMAGES), settings.get(opts.IMAGE_TOKENS))

    def defaults(self) -> None:
        self.show_values(opts.IMAGES.default, opts.IMAGE_TOKENS.default)

    def changed(self, settings: Settings) -> bool:
        """Whether storing would change what loads with a model (a reload)."""
        return self.enabled.isChecked() != settings.get(opts.IMAGES) or int(self.detail.currentData() or 0) != (
            settings.get(opts.IMAGE_TOKENS)
        )

    def store(self, settings: Settings) -> None:
        settings.set(opts.IMAGES, self.enabled.isChecked())
        settings.set(opts.IMAGE_TOKENS, int(self.detail.currentData() or 0))
