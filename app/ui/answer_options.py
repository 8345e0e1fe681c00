"""Per conversation: whether the model thinks before answering, and whether it may call tools.

Both need a model whose prompt format has them (Gemma 4). A new chat starts with
the defaults in Settings; the composer's Think and Tools buttons change the open
chat's choice. Which tools are offered, and which ask before each call, are
Settings → Tools.
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


class AnswerOptions:
    """The open chat's choices, remembered for each conversation shown this session."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self.supported = False  # the loaded model can think and call tools
        self._chosen: dict[int | None, Choice] = {}  # by conversation id (None: the new chat)
        self.conversation: int | None = None

    def _default(self) -> Choice:
        return Choice(self._settings.get(opts.THINKING), self._settings.get(opts.TOOLS))

    @property
    def current(self) -> Choice:
        """The open chat's choice."""
        return self._chosen.setdefault(self.conversation, self._default())

    def show(self, conversation: int | None) -> None:
        """Another chat is open (None: a new one, with the defaults)."""
        if conversation is None:
            self._chosen.pop(None, None)
        self.conversation = conversation

    def adopt(self, conversation: int) -> None:
        """The new chat was saved as `conversation`: its choice goes with it."""
        if self.conversation is None:
            self._chosen[conversation] = self.current
            self._chosen.pop(None, None)
            self.conversation = conversation

    def set(self, thinking: bool | None = None, tools: bool | None = None) -> None:
        """Change the open chat's choice."""
        choice = self.current
        if thinking is not None:
            choice.thinking = thinking
        if tools is not None:
            choice.tools = tools

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
