"""Per conversation: whether the model thinks before answering, and whether it may call tools.

Both need a model whose prompt format has them (Gemma 4). A new chat starts with
the defaults in Settings; the composer's Think and Tools buttons change the open
chat's choice, which is kept in the encrypted history with the chat's other private
preferences (one short value per chat that changed it). Which tools are offered, and
which ask before each call, are Settings → Thinking and tools.
"""

from __future__ import annotations

from dataclasses import dataclass

from app import settings as opts
from app.core.tools.base import Toolbox
from app.core.tools.builtin import BUILTIN
from app.settings import Settings


@dataclass
class Choice:
    thinking: bool
    tools: bool

    def text(self) -> str:
        return f"thinking={int(self.thinking)} tools={int(self.tools)}"

    @classmethod
    def read(cls, text: str, default: Choice) -> Choice:
        values = dict(part.partition("=")[::2] for part in text.split())
        thinking = values.get("thinking", str(int(default.thinking)))
        return cls(thinking == "1", values.get("tools", str(int(default.tools))) == "1")


def _key(conversation: int) -> str:
    return f"chat/{conversation}/answer_options"


class AnswerOptions:
    """The open chat's choices: a new chat's in memory until it is saved, a saved chat's in the history."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.supported = False  # the loaded model can think and call tools
        self._new: Choice | None = None  # the new chat's choice, until it has an id
        self.conversation: int | None = None

    def _default(self) -> Choice:
        return Choice(self._settings.get(opts.THINKING), self._settings.get(opts.TOOLS))

    @property
    def current(self) -> Choice:
        """The open chat's choice."""
        if self.conversation is None:
            if self._new is None:
                self._new = self._default()
            return self._new
        kept = self._settings.private_value(_key(self.conversation))
        return Choice.read(kept, self._default()) if kept else self._default()

    def show(self, conversation: int | None) -> None:
        """Another chat is open (None: a new one, with the defaults)."""
        self._new = None
        self.conversation = conversation

    def adopt(self, conversation: int) -> None:
        """The new chat was saved as `conversation`: its choice goes with it."""
        if self.conversation is None:
            choice = self.current
            self._new, self.conversation = None, conversation
            if choice != self._default():
                self._settings.set_private_value(_key(conversation), choice.text())

    def set(self, thinking: bool | None = None, tools: bool | None = None) -> None:
        """Change the open chat's choice."""
        choice = self.current
        if thinking is not None:
            choice.thinking = thinking
        if tools is not None:
            choice.tools = tools
        if self.conversation is not None:
            self._settings.set_private_value(_key(self.conversation), choice.text())

    @property
    def thinking(self) -> bool:
        """Think before answering, in this turn."""
        return self.supported and self.current.thinking

    def toolbox(self) -> Toolbox | None:
        """The tools this turn offers (None: none), each asking first as Settings says."""
        if not (self.supported and self.current.tools):
            return None
        off = set(self._settings.get(opts.TOOLS_OFF).split())
        ask = set(self._settings.get(opts.TOOLS_ASK).split())
        offered = [tool for tool in BUILTIN if tool.name not in off]
        return Toolbox.of(offered, {tool.name: tool.name in ask for tool in offered}) if offered else None
