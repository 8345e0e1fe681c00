"""Settings → Thinking and tools: what new chats start with, which tools the model is offered, which ask first."""

from __future__ import annotations

from PySide6.QtWidgets import QCheckBox, QGridLayout, QGroupBox, QLabel, QWidget

from app import settings as opts
from app.core.tools.builtin import BUILTIN
from app.settings import Settings

TIPS = {
    "thinking": "New chats start with Think on: a Gemma 4 model thinks before it answers. Answers come later "
    "and are often better. The Think button under the message box changes it for one chat.",
    "tools": "New chats start with Tools on: a Gemma 4 model may use the tools ticked below. The tools are "
    "described to the model at the start of each chat, which costs a little reading time. The Tools button "
    "under the message box changes it for one chat.",
    "offer": "Offer this tool to the model.",
    "ask": "Ask you before each use; you can refuse, and the model is told.",
}


class ToolsGroup(QGroupBox):
    """The thinking and tools preferences (for models whose prompt format has them, such as Gemma 4)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Thinking and tools (Gemma 4)", parent)
        self.thinking = QCheckBox("Think before answering in new chats")
        self.tools = QCheckBox("Let the model use tools in new chats")
        grid = QGridLayout(self)
        grid.addWidget(self.thinking, 0, 0, 1, 3)
        grid.addWidget(self.tools, 1, 0, 1, 3)
        grid.addWidget(QLabel("<b>Tool</b>"), 2, 0)
        grid.addWidget(QLabel("<b>Offer</b>"), 2, 1)
        grid.addWidget(QLabel("<b>Ask first</b>"), 2, 2)
        self.offer: dict[str, QCheckBox] = {}
        self.ask: dict[str, QCheckBox] = {}
        for row, tool in enumerate(BUILTIN, start=3):
            label = QLabel(tool.label)
            label.setToolTip(tool.description)
            offer, ask = QCheckBox(), QCheckBox()
            for box, tip in ((offer, TIPS["offer"]), (ask, TIPS["ask"])):
                box.setToolTip(tip)
                box.setAccessibleName(f"{tool.label}: {tip}")
            offer.toggled.connect(ask.setEnabled)
            self.offer[tool.name], self.ask[tool.name] = offer, ask
            grid.addWidget(label, row, 0)
            grid.addWidget(offer, row, 1)
            grid.addWidget(ask, row, 2)
        for box, tip in ((self.thinking, TIPS["thinking"]), (self.tools, TIPS["tools"])):
            box.setToolTip(tip)
            box.setAccessibleDescription(tip)

    def show_values(self, thinking: bool, tools: bool, off: str, ask: str) -> None:
        self.thinking.setChecked(thinking)
        self.tools.setChecked(tools)
        for name, box in self.offer.items():
            box.setChecked(name not in off.split())
            self.ask[name].setChecked(name in ask.split())
            self.ask[name].setEnabled(box.isChecked())

    def load(self, settings: Settings) -> None:
        self.show_values(
            settings.get(opts.THINKING),
            settings.get(opts.TOOLS),
            settings.get(opts.TOOLS_OFF),
            settings.get(opts.TOOLS_ASK),
        )

    def defaults(self) -> None:
        self.show_values(opts.THINKING.default, opts.TOOLS.default, opts.TOOLS_OFF.default, opts.TOOLS_ASK.default)

    def store(self, settings: Settings) -> None:
        settings.set(opts.THINKING, self.thinking.isChecked())
        settings.set(opts.TOOLS, self.tools.isChecked())
        settings.set(opts.TOOLS_OFF, " ".join(name for name, box in self.offer.items() if not box.isChecked()))
        settings.set(opts.TOOLS_ASK, " ".join(name for name, box in self.ask.items() if box.isChecked()))
