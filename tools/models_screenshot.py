"""Screenshot of the model manager for the README: a catalogue entry looked up, with fit guidance.

    tools/screenshot.sh --models resources/models.png
    tools/screenshot.sh --models resources/model-projector.png --projector
    TERN_SCREEN=1366x768x24 QT_SCALE_FACTOR=2 tools/screenshot.sh --models models-200.png --as-opened

With --as-opened the window keeps the size and place the app gives it, and the whole
screen is grabbed: what a user at that scale sees.

The hub is the loopback server the tests use, serving the E2B-shaped
synthetic Gemma 4 GGUFs (built by `python -m tools.synthetic_gemma
e2b --quant Q8_0 Q4_K_M`) under the names a real repository uses, so the fit
guidance is computed from a real E2B-shaped header on this machine.

With --projector the repository also serves an image projector with Gemma 4
E2B's vision and audio towers (`python -m tools.synthetic_mmproj --shape e2b
--audio`, written here on first use), so the model is offered with it.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SYNTHETIC = Path.home() / ".cache" / "tern" / "synthetic"
REPO = "ggml-org/gemma-4-E2B-it-GGUF"


PROJECTOR_NAME = "mmproj-gemma-4-E2B-it-f16.gguf"  # as ggml-org names it


def main(out: Path, as_opened: bool = False, projector: bool = False) -> int:
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from app import settings as opts
    from app.bootstrap import parse_args, shutdown, start
    from app.core.paths import AppPaths
    from app.settings import Settings
    from tests.fixtures.hub_server import HubServer

    files = {
        f"gemma-4-E2B-it-{quant}.gguf": SYNTHETIC / f"gemma4-e2b-shaped-{quant}.gguf"
        for quant in ("Q4_K_M", "Q8_0")
        if (SYNTHETIC / f"gemma4-e2b-shaped-{quant}.gguf").exists()
    }
    if projector and files:
        from tools.synthetic_mmproj import matching_projector

        files[PROJECTOR_NAME] = matching_projector(next(iter(files.values())), SYNTHETIC, "e2b", "e2b")
    with HubServer({REPO: files}) as hub:
        paths = AppPaths.default()
        paths.create()
        Settings(paths.settings_file).set(opts.HUB_ENDPOINT, hub.endpoint)
        session = start(parse_args(["--no-err-windows"]))
        window = session.window
        manager = window.open_models()
        if not as_opened:
            window.resize(1280, 780)
            manager.resize(1100, 640)
            manager.move(90, 60)

        def grab() -> None:
            frame = manager.frameGeometry() if not as_opened else QGuiApplication.primaryScreen().geometry()
            shot = QGuiApplication.primaryScreen().grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
            shot.save(str(out))
            session.app.quit()

        window.downloads.fetched.connect(lambda *_: QTimer.singleShot(500, grab))
        QTimer.singleShot(1500, manager.discover.look_up_repo)
        QTimer.singleShot(60_000, session.app.quit)
        try:
            session.app.exec()
        finally:
            shutdown(session)
    return 0 if out.exists() else 1


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), "--as-opened" in sys.argv[2:], "--projector" in sys.argv[2:]))
