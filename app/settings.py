"""User preferences, declared once with type and default, stored with QSettings.

Window state lives in its own file (see `AppPaths.window_state_file`), so
resetting preferences never loses a layout and vice versa. Secrets never go
here. `SETTINGS_VERSION` and `_UPGRADES` move old files forward.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from PySide6.QtCore import QSettings

from app.core.api import DEFAULT_PORT
from app.core.engine.generation import SamplingParams
from app.core.engine.options import LoadOptions, Residency

T = TypeVar("T", str, int, float, bool)


@dataclass(frozen=True)
class Option(Generic[T]):
    """One preference: its key, type and default."""

    key: str
    type: type[T]
    default: T
    minimum: float | None = None
    maximum: float | None = None
    private: bool = False  # user text: kept in the encrypted history, never in the settings file


# The engine's dataclasses hold the defaults, so a turn or load built without settings behaves like a fresh install.
_SAMPLING = SamplingParams()
_LOAD = LoadOptions()

SYSTEM_PROMPT = Option("chat/system_prompt", str, "", private=True)
PRIVATE_KEYS = (SYSTEM_PROMPT.key,)
TEMPERATURE = Option("sampling/temperature", float, _SAMPLING.temperature, 0.0, 2.0)
TOP_P = Option("sampling/top_p", float, _SAMPLING.top_p, 0.0, 1.0)
TOP_K = Option("sampling/top_k", int, _SAMPLING.top_k, 0, 1000)
REPEAT_PENALTY = Option("sampling/repeat_penalty", float, _SAMPLING.repeat_penalty, 1.0, 2.0)
MAX_TOKENS = Option("sampling/max_tokens", int, _SAMPLING.max_tokens, 16, 32768)
CONTEXT_SIZE = Option("model/context_size", int, _LOAD.n_ctx, 512, 131072)
THREADS = Option("model/threads", int, _LOAD.n_threads, 0, 256)  # 0 = automatic
GPU_LAYERS = Option("model/gpu_layers", int, _LOAD.n_gpu_layers, 0, 999)  # layers offloaded on a GPU build of llama.cpp
MODEL_PATH = Option("model/path", str, "")  # empty = the starter model
RESIDENCY = Option("model/residency", str, _LOAD.residency.value)
# The longest wait for new document passages to be read before an answer starts (sets how many are given).
SOURCE_WAIT_S = Option("documents/source_wait_s", int, 60, 5, 3600)
EMBEDDING_MODEL = Option("documents/embedding_model", str, "")  # a GGUF for hybrid document search; "" = words only
HUB_ENDPOINT = Option("hub/endpoint", str, "https://huggingface.co")  # a mirror, for regions that need one
AUTO_LOCK_MINUTES = Option("history/auto_lock_minutes", int, 0, 0, 1440)  # with a passphrase; 0 = never
LAST_CONVERSATION = Option("history/last_conversation", int, 0)  # reopened at start (an id, not content)
# The local OpenAI-compatible endpoint for IDEs: off until turned on; its key lives in the keychain.
API_ENABLED = Option("api/enabled", bool, False)
API_PORT = Option("api/port", int, DEFAULT_PORT, 1024, 65535)
API_REQUIRE_KEY = Option("api/require_key", bool, True)
API_ORIGINS = Option("api/origins", str, "")  # web origins allowed to call it, separated by spaces
API_KEEP_HISTORY = Option("api/keep_history", bool, False)  # API conversations are not kept unless asked
# Gemma 4: think before answering, and let the model call tools (each new chat starts with these; the
# composer's Think and Tools buttons change them for the chat). Tools are listed to the model in every
# prompt, so they cost reading time: off until asked for.
THINKING = Option("chat/thinking", bool, False)
TOOLS = Option("chat/tools", bool, False)
TOOLS_OFF = Option("tools/off", str, "")  # names of tools the model is not offered, separated by spaces
TOOLS_ASK = Option("tools/ask", str, "read_file")  # names of tools that ask before each call
# Images: a model's image projector (an mmproj file beside it) loads with it, and each image takes up to
# IMAGE_TOKENS tokens (0: the projector's own default; more is finer detail and longer reading).
IMAGES = Option("images/enabled", bool, True)
IMAGE_TOKENS = Option("images/tokens", int, _LOAD.image_tokens, 0, 4096)
WRAP_CODE = Option("chat/wrap_code", bool, False)  # off: code keeps its lines, and a message with long ones scrolls

SETTINGS_VERSION = 1
# Step N upgrades a file from version N-1 to N.
_UPGRADES: dict[int, Callable[[QSettings], None]] = {}


class Settings:
    """Typed access to the preferences file."""

    def __init__(self, path: Path) -> None:
        self._qs = QSettings(str(path), QSettings.Format.IniFormat)
        self._upgrade()
        self._private: dict[str, str] = {}  # private preferences, from the history once it is open
        self._unsaved: dict[str, str] = {}  # set while no history could take them
        # Called with (key, value) when a private preference changes; True once the history has it.
        self.keep_private: Callable[[str, str], bool] = lambda _key, _value: False

    def _upgrade(self) -> None:
        version = int(str(self._qs.value("meta/version", 0) or 0))
        for step in range(version + 1, SETTINGS_VERSION + 1):
            if step in _UPGRADES:
                _UPGRADES[step](self._qs)
        if version != SETTINGS_VERSION:
            self._qs.setValue("meta/version", SETTINGS_VERSION)

    def get(self, option: Option[T]) -> T:
        """The stored value, or the default when missing or unreadable."""
        raw: Any
        if option.private:  # held in memory, from the encrypted history
            raw = self._private.get(option.key, option.default)
        else:
            raw = self._qs.value(option.key, option.default)
        value: Any
        try:
            if option.type is bool and isinstance(raw, str):
                value = raw.lower() in ("1", "true", "yes")
            else:
                value = option.type(raw)
        except (TypeError, ValueError):
            return option.default
        if option.minimum is not None and value < option.minimum:
            return option.default
        if option.maximum is not None and value > option.maximum:
            return option.default
        return value  # type: ignore[no-any-return]

    def set(self, option: Option[T], value: T) -> None:
        """Store a value (a private one in the history, through `keep_private`)."""
        if not option.private:
            self._qs.setValue(option.key, option.type(value))
            return
        self._private[option.key] = str(value)
        if not self.keep_private(option.key, str(value)):
            self._unsaved[option.key] = str(value)

    def private_value(self, key: str) -> str | None:
        """A private value that has no Option of its own (e.g. one per conversation), or None."""
        return self._private.get(key)

    def set_private_value(self, key: str, value: str) -> None:
        """Keep a private value in the history, as `set` keeps a private Option."""
        self._private[key] = value
        if not self.keep_private(key, value):
            self._unsaved[key] = value

    def unsaved_private(self) -> dict[str, str]:
        """Private preferences the history does not hold yet: set while it was closed, or left by an older version."""
        older = {key: str(self._qs.value(key)) for key in PRIVATE_KEYS if self._qs.contains(key)}
        return {**older, **self._unsaved}

    def use_private(self, values: dict[str, str]) -> None:
        """Take the private preferences from the history just opened (which now holds the unsaved ones)."""
        self._private = dict(values)
        self._unsaved.clear()
        for key in PRIVATE_KEYS:  # an older version kept them here in the clear
            self._qs.remove(key)
        self._qs.sync()

    def sync(self) -> None:
        """Write pending changes to disk."""
        self._qs.sync()

    def sampling(self) -> SamplingParams:
        """Sampling parameters for the next turn."""
        return SamplingParams(
            temperature=self.get(TEMPERATURE),
            top_p=self.get(TOP_P),
            top_k=self.get(TOP_K),
            repeat_penalty=self.get(REPEAT_PENALTY),
            max_tokens=self.get(MAX_TOKENS),
        )

    def residency(self) -> Residency:
        """Where model weights should live."""
        try:
            return Residency(self.get(RESIDENCY))
        except ValueError:
            return _LOAD.residency

    def load_options(self) -> LoadOptions:
        """How the next model load should be done."""
        return LoadOptions(
            n_ctx=self.get(CONTEXT_SIZE),
            n_threads=self.get(THREADS),
            n_gpu_layers=self.get(GPU_LAYERS),
            residency=self.residency(),
            images=self.get(IMAGES),
            image_tokens=self.get(IMAGE_TOKENS),
        )

    def model_path(self) -> Path | None:
        """The chosen model file, or None for the starter model."""
        value = self.get(MODEL_PATH)
        return Path(value) if value else None
