"""Screenshot of a picture sent to a model that sees, for the README.

    tools/screenshot.sh --vision resources/image-chat.png

Tern starts on a throwaway profile with a tiny random-weight Gemma 4 that speaks
Gemma 4's own format (tools/synthetic_gemma.py, tiny-gemma4-real), with a synthetic
image projector beside it (tools/synthetic_mmproj.py), as a downloaded vision model
has its mmproj file. A chart is pasted into the composer and sent with a question:
the image reader prepares it in its child process, the projector encodes it, and
the model reads its tokens (the stats under the answer count them). The weights
are random, so the answer's words are noise. A second picture is then pasted, to
show it waiting above the composer.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

from PySide6.QtCore import QMimeData, QTimer
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QApplication

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "What does this chart show?"


def chart(width: int = 640, height: int = 400) -> QImage:
    """A rainfall bar chart, drawn here."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    rain = [78, 61, 55, 43, 49, 45, 44, 49, 50, 69, 76, 80]
    draw.text((20, 12), "Rainfall, mm per month", fill="black")
    step = (width - 60) // len(months)
    for i, (month, mm) in enumerate(zip(months, rain, strict=True)):
        x = 40 + i * step
        top = height - 40 - mm * 3
        draw.rectangle((x, top, x + step - 10, height - 40), fill=(59, 130, 246))
        draw.text((x + 4, height - 32), month, fill="black")
    draw.line((30, height - 40, width - 10, height - 40), fill="black", width=2)
    return QImage(image.tobytes(), width, height, width * 3, QImage.Format.Format_RGB888).copy()


def photo() -> QImage:
    """A second picture, waiting to be sent."""
    image = QImage(320, 240, QImage.Format.Format_RGB32)
    for y in range(240):
        for x in range(320):
            image.setPixel(x, y, (x * 255 // 320) << 16 | (y * 255 // 240) << 8 | 160)
    return image


def main(out: Path) -> int:
    from tools.synthetic_gemma import TINY_GEMMA4_REAL, ensure_model
    from tools.synthetic_mmproj import matching_projector

    cache = Path.home() / ".cache" / "tern" / "synthetic"
    model = ensure_model(TINY_GEMMA4_REAL, "F16", cache, Path())
    folder = cache / "vision-screenshot"
    folder.mkdir(parents=True, exist_ok=True)
    seeing = folder / model.name
    if not seeing.exists():
        shutil.copy(model, seeing)
    matching_projector(seeing, folder)
    profile = Path(tempfile.mkdtemp(prefix="tern-screenshot-"))
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_STATE_HOME"):
        os.environ[var] = str(profile / var.lower())
    from app import settings as opts
    from app.bootstrap import parse_args, shutdown, start
    from app.core.paths import AppPaths
    from app.settings import Settings

    paths = AppPaths.default()
    paths.create()
    settings = Settings(paths.settings_file)
    for option, value in (
        (opts.MODEL_PATH, str(seeing)),
        (opts.CONTEXT_SIZE, 2048),
        (opts.MAX_TOKENS, 24),
        (opts.TEMPERATURE, 0.0),
    ):
        settings.set(option, value)
    settings.sync()
    session = start(parse_args(["--no-err-windows"]))
    window = session.window
    window.resize(1100, 760)
    status = {"code": 1}

    def paste(picture: QImage) -> None:
        mime = QMimeData()
        mime.setImageData(picture)
        window.composer.insertFromMimeData(mime)

    def ask(*_: object) -> None:
        paste(chart())
        wait_for_tray()

    def wait_for_tray() -> None:
        if not window.chat.tray.images:
            QTimer.singleShot(200, wait_for_tray)
            return
        window.answer_finished.connect(lambda _result: QTimer.singleShot(300, next_picture))
        window.send_message(QUESTION)

    def next_picture() -> None:
        paste(photo())
        QTimer.singleShot(1500, grab)

    def grab() -> None:
        window.view.scroll_to_end()
        QGuiApplication.primaryScreen().grabWindow(0).save(str(out))
        status["code"] = 0
        shutdown(session)
        QApplication.quit()

    window.model_ready.connect(lambda *_: QTimer.singleShot(500, ask))
    QApplication.exec()
    return status["code"]


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1])))
