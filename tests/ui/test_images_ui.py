"""Images in the window: pasted into the composer, shown as thumbnails, read by a model that sees, kept in the
encrypted history, refused with a clear line when they are hostile or the model cannot see.

The model is the tiny real-vocabulary Gemma 4 with its synthetic projector, placed beside it as an
`mmproj-*.gguf` file, where Tern looks for a model's projector.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QImage, QTextDocument
from PySide6.QtWidgets import QApplication
from pytestqt.qtbot import QtBot

from app import settings as opts
from app.core.paths import AppPaths
from app.ui.image_viewer import ImageViewer
from app.ui.main_window import MainWindow
from app.ui.message_header import THUMB_SCHEME
from tests.fixtures.images import encode, png_claiming, png_of_zeros, quadrants
from tests.ui.windows import Windows, settings_with

LONG = 120_000

pytestmark = pytest.mark.skipif(
    os.environ.get("TERN_TEST_KEYRING") != "1",
    reason="needs the Secret Service (gnome-keyring under dbus) that ./test.sh starts",
)


@pytest.fixture(scope="module")
def seeing_model(tmp_path_factory: pytest.TempPathFactory, tiny_gemma4_real: Path, gemma4_projector: Path) -> Path:
    """The tiny Gemma 4 in a folder of its own, with its projector beside it."""
    folder = tmp_path_factory.mktemp("vision-model")
    model = folder / "tiny-gemma4-real.gguf"
    shutil.copy(tiny_gemma4_real, model)
    shutil.copy(gemma4_projector, folder / "mmproj-tiny-gemma4-real-f16.gguf")
    return model


def window_with(windows: Windows, app_paths: AppPaths, model: Path | None) -> MainWindow:
    settings = settings_with(app_paths, {opts.CONTEXT_SIZE: 2048, opts.MAX_TOKENS: 16, opts.TEMPERATURE: 0.0})
    return windows.start(settings, load=model)


def paste(window: MainWindow, picture: QImage) -> None:
    mime = QMimeData()
    mime.setImageData(picture)
    window.composer.insertFromMimeData(mime)


def picture() -> QImage:
    image = QImage(120, 80, QImage.Format.Format_RGB32)
    image.fill(Qt.GlobalColor.darkCyan)
    return image


def test_a_pasted_image_is_sent_read_kept_and_opened_again(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, seeing_model: Path
) -> None:
    w = window_with(windows, app_paths, seeing_model)
    loaded = w.models.loaded
    assert loaded is not None and loaded.projector.startswith("mmproj-")
    tray = w.chat.tray
    assert not tray.isVisible()
    paste(w, picture())
    qtbot.waitUntil(lambda: len(tray.images) == 1, timeout=LONG)
    assert tray.isVisible() and not tray.note.isVisible()  # this model sees it: nothing to warn about
    image = tray.images[0]
    assert (image.width, image.height, image.mime) == (120, 80, "image/png")

    assert w.composer.sends_empty  # an image alone may be sent
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        assert w.send_message("What is in this picture?")
    assert not tray.images and not tray.isVisible()
    question, answer = w.model.item(0), w.model.item(1)
    assert [i.key for i in question.images] == [image.key]
    assert answer.stats is not None and answer.stats.prompt_evaluated > 64  # the image's tokens were read
    doc = w.view.delegate.rendered(w.model.index(0)).doc
    shown = doc.resource(QTextDocument.ResourceType.ImageResource, QUrl(f"{THUMB_SCHEME}:{image.key}"))
    assert isinstance(shown, QImage) and not shown.isNull()

    # Reopened from the history: the thumbnail comes back from the encrypted store, the whole image on a click.
    conversation = w.history.conversation_id
    assert conversation is not None
    w.new_chat()
    with qtbot.waitSignal(w.session.conversation_shown, timeout=LONG):
        w.conversations.open(conversation)
    reopened = w.model.item(0)
    assert [i.key for i in reopened.images] == [image.key] and reopened.images[0].data == b""
    w.view.delegate.image_requested.emit(0, image.key)
    qtbot.waitUntil(lambda: any(isinstance(t, ImageViewer) for t in QApplication.topLevelWidgets()), timeout=LONG)
    viewer = next(t for t in QApplication.topLevelWidgets() if isinstance(t, ImageViewer))
    assert viewer.label.pixmap().width() == 120
    viewer.close()


def test_hostile_images_are_refused_each_with_a_reason_and_the_model_stays(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, seeing_model: Path
) -> None:
    w = window_with(windows, app_paths, seeing_model)
    good = encode(quadrants(), "PNG")
    hostile = [
        (good[: len(good) // 2], "cut.png"),  # truncated
        (png_of_zeros(10_000, 10_000), "bomb.png"),  # a few KB that decode to 100 megapixels
        (png_claiming(20_000, 20_000), "huge.png"),
        (b"not an image at all", "junk.png"),
    ]
    w.chat.add_images([*hostile, (good, "fine.png")])
    qtbot.waitUntil(lambda: len(w.chat.tray.images) == 1, timeout=LONG)
    warning = w.notice.label.text()
    for _data, name in hostile:
        assert name in warning
    assert "20,000 × 20,000" in warning and "damaged" in warning.lower()
    assert w.models.loaded is not None and w.models.loaded.projector  # still loaded, still seeing
    with qtbot.waitSignal(w.answer_finished, timeout=LONG):
        assert w.send_message("And this one?")
    assert w.model.item(1).stats is not None


def test_a_model_that_cannot_see_keeps_the_image_waiting_and_says_why(
    qtbot: QtBot, windows: Windows, app_paths: AppPaths, starter_model: Path
) -> None:
    w = window_with(windows, app_paths, starter_model)  # no projector beside it
    paste(w, picture())
    qtbot.waitUntil(lambda: len(w.chat.tray.images) == 1, timeout=LONG)
    assert w.chat.tray.note.isVisible() and "can't see images" in w.chat.tray.note.text()
    assert not w.send_message("What is this?")
    assert w.model.rowCount() == 0 and len(w.chat.tray.images) == 1  # nothing sent, nothing lost
    assert "can't see images" in w.stats_label.text()
    thumb = w.chat.tray._thumbs[0]
    qtbot.mouseClick(thumb.remove_button, Qt.MouseButton.LeftButton)  # taken out before sending
    assert not w.chat.tray.images and not w.chat.tray.isVisible()
