"""Where Tern keeps its files, per the platform's conventions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import platformdirs

from app import APP_ID


@dataclass(frozen=True)
class AppPaths:
    """The user-level folders the app writes to."""

    data: Path
    config: Path
    logs: Path
    cache: Path

    @property
    def models(self) -> Path:
        """Downloaded and assembled GGUF models."""
        return self.data / "models"

    @property
    def history_db(self) -> Path:
        """The encrypted conversation history."""
        return self.data / "history.db"

    @property
    def settings_file(self) -> Path:
        """User preferences (versioned)."""
        return self.config / "settings.ini"

    @property
    def window_state_file(self) -> Path:
        """Window geometry and splitter positions, kept apart from preferences."""
        return self.config / "window-state.ini"

    @classmethod
    def default(cls) -> AppPaths:
        """The platform's standard locations (XDG on Linux)."""
        return cls(
            data=Path(platformdirs.user_data_dir(APP_ID, appauthor=False)),
            config=Path(platformdirs.user_config_dir(APP_ID, appauthor=False)),
            logs=Path(platformdirs.user_log_dir(APP_ID, appauthor=False)),
            cache=Path(platformdirs.user_cache_dir(APP_ID, appauthor=False)),
        )

    def create(self) -> None:
        """Make every folder, private to the user."""
        for folder in (self.data, self.config, self.logs, self.cache, self.models):
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
