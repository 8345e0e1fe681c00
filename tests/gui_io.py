"""A guard that fails a UI test when app code does blocking file or database work on the GUI thread.

`sys.addaudithook` sees every `open`, `os.remove`, `os.rename`, `os.replace`,
`shutil.*` and `sqlite3.connect` (SQLCipher's too: `app.core.store.database`
announces its connections) in the process. While a UI test runs, each one
made on the main thread is recorded when GUI-side app code is on the stack:
a frame under `app/` but outside `app/core/` (widgets, services, bootstrap).
In the app, that is the only way to reach the disk from the GUI thread, since
`app/core` has no Qt. A test calling `app/core` directly (writing fixtures,
reading a database back) and module imports are not recorded. `ALLOWED`
names the few exceptions, by the innermost app file.
"""

from __future__ import annotations

import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app") + "/"
CORE = str(ROOT / "app" / "core") + "/"
WATCHED = (
    "open",
    "os.remove",
    "os.unlink",
    "os.rename",
    "os.replace",
    "os.rmdir",
    "sqlite3.connect",
    "socket.bind",  # the local API listens from its own thread
    "socket.connect",
)

# (app file, event) → why it may run on the GUI thread. Keep this short; every entry is a decision.
ALLOWED: dict[tuple[str, str], str] = {
    # Icons and the stylesheet are read from the package once, at start-up, before the window shows.
    ("app/ui/app_icon.py", "open"): "the app icon, read from package resources at start-up",
    # The crash handler writes its marker before the event loop runs, and the faulthandler log must be
    # open before anything can crash.
    ("app/crash_handler.py", "open"): "the run marker and the fault log, at start-up",
    # The model catalogue is a few KB inside the package, like a Qt resource, read once when the manager opens.
    ("app/core/models/catalog.py", "open"): "the bundled model catalogue",
}


@dataclass(frozen=True)
class Event:
    """One blocking operation seen on the GUI thread."""

    event: str
    where: str  # app file:line
    target: str

    def __str__(self) -> str:
        return f"{self.event}({self.target}) at {self.where}"


class GuiThreadIo:
    """Records blocking operations made by app code on the main thread while `active`."""

    def __init__(self) -> None:
        self.active = False
        self.events: list[Event] = []
        self._main = threading.main_thread()

    def hook(self, event: str, args: tuple[object, ...]) -> None:
        """The audit hook (installed once per process)."""
        if not self.active or threading.current_thread() is not self._main:
            return
        if not (event in WATCHED or event.startswith(("shutil.", "sqlcipher"))):
            return
        where = self._gui_side(sys._getframe(1))
        if where is None:
            return
        file, line = where
        if (file, event) in ALLOWED:
            return
        target = str(args[0]) if args else ""
        if event == "open" and target.endswith((".py", ".pyc", ".so")):
            return  # module code loaded on first use (a Pygments lexer), as an import does
        self.events.append(Event(event, f"{file}:{line}", target))

    @staticmethod
    def _gui_side(frame: FrameType | None) -> tuple[str, int] | None:
        """The innermost app frame, when GUI-side app code is on the stack; None otherwise."""
        innermost = None
        gui_side = False
        while frame is not None:
            name = frame.f_code.co_filename
            if name.startswith("<frozen importlib"):
                return None  # a module import
            if name.startswith(APP):
                if innermost is None:
                    innermost = (name[len(str(ROOT)) + 1 :], frame.f_lineno)
                gui_side = gui_side or not name.startswith(CORE)
            frame = frame.f_back
        return innermost if gui_side else None


GUARD = GuiThreadIo()
sys.addaudithook(GUARD.hook)
