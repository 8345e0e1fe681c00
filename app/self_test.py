"""`tern --self-test`: the real app, end to end, headless.

Waits for the model, starts indexing a long PDF in a scratch encrypted
history, sends a prompt through the composer's own path, and measures the
longest stall of the GUI thread with a QTimer heartbeat while the answer
streams and the document is read. Then it checks what a frozen bundle most easily gets wrong:
an encrypted history written and read back with its key in the system
keychain, a PDF read by the sandboxed reader in a child process, and the TLS
trust store downloads use. Prints one JSON object and sets the exit code.
"""

from __future__ import annotations

import json
import logging
import shutil
import ssl
import sys
import tempfile
import time
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QPageSize, QPainter, QPdfWriter
from PySide6.QtWidgets import QApplication

from app.core.docs.ingest import IngestError, ingest
from app.core.engine import backends
from app.core.engine.options import LoadedModel
from app.core.store import keys
from app.core.store.conversation_store import ConversationStore
from app.core.store.database import open_database
from app.core.turn import TurnResult
from app.services.documents import DocumentService
from app.services.history import HistoryService
from app.ui.main_window import MainWindow

PROMPT = "Write a long story about a lighthouse keeper who finds a message in a bottle."
MIN_TOKENS = 16
MAX_ATTEMPTS = 3  # a sampled answer may end early; that is the model's choice, not a failure
HEARTBEAT_MS = 5
TIMEOUT_S = 300
MARKER = "Tern self-test: the lamp is lit at dusk"
INDEX_PAGES = 400  # long enough to be read and stored while the answer streams


class SelfTest(QObject):
    """Drives the window and reports."""

    def __init__(self, window: MainWindow, started: float | None = None) -> None:
        super().__init__(window)
        self._window = window
        self._started = started  # time.monotonic() when the process began running Python
        self._shown_at: float | None = None
        self._loaded_at: float | None = None
        self.exit_code = 1
        self._last_beat = 0.0
        self._max_stall_ms = 0.0
        self._streaming = False
        self._attempts = 0
        self._result: TurnResult | None = None
        self._indexing: _Indexing | None = None
        self._heartbeat = QTimer(self)
        self._heartbeat.setInterval(HEARTBEAT_MS)
        self._heartbeat.timeout.connect(self._beat)
        self._deadline = QTimer(self)
        self._deadline.setSingleShot(True)
        self._deadline.timeout.connect(lambda: self._finish({"ok": False, "error": f"timed out after {TIMEOUT_S} s"}))

    def start(self) -> None:
        """Begin once the model has loaded."""
        self._window.installEventFilter(self)
        self._window.model_ready.connect(self._on_loaded)
        self._window.model_failed.connect(self._on_failed)
        self._window.answer_finished.connect(self._on_answer)
        self._deadline.start(TIMEOUT_S * 1000)

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        """Note when the window is first painted."""
        if self._shown_at is None and event.type() == QEvent.Type.Paint:
            self._shown_at = time.monotonic()
        return False

    def _on_loaded(self, _loaded: LoadedModel) -> None:
        self._loaded_at = time.monotonic()
        self._indexing = _Indexing(self)
        self._indexing.start()
        self._window.composer.setPlainText(PROMPT)
        self._streaming = True
        self._attempts = 1
        self._last_beat = time.perf_counter()
        self._heartbeat.start()
        self._window.composer.submit()  # the same path as pressing Enter

    def _on_failed(self, message: str) -> None:
        self._finish({"ok": False, "error": message})

    def _beat(self) -> None:
        now = time.perf_counter()
        if self._streaming:
            self._max_stall_ms = max(self._max_stall_ms, (now - self._last_beat) * 1000 - HEARTBEAT_MS)
        self._last_beat = now

    def _on_answer(self, result: TurnResult) -> None:
        s = result.stats
        if s.completion_tokens < MIN_TOKENS and self._attempts < MAX_ATTEMPTS:
            self._attempts += 1
            QTimer.singleShot(0, self._window.regenerate)  # the Regenerate button's path
            return
        self._result = result
        if self._indexing is not None and not self._indexing.finished:
            self._indexing.done.connect(self._report)  # the stall is measured until both have ended
        else:
            self._report()

    def _report(self) -> None:
        result = self._result
        assert result is not None
        s = result.stats
        self._streaming = False
        self._heartbeat.stop()
        text = self._window.model.item(self._window.model.rowCount() - 1).text
        backend = backends.current()
        report: dict[str, object] = {
            "ok": s.completion_tokens >= MIN_TOKENS and bool(text.strip()),
            "tokens": s.completion_tokens,
            "ttft_ms": round(s.ttft_ms, 1),
            "decode_tok_s": round(s.decode_tok_s, 1),
            "max_ui_stall_ms": round(max(0.0, self._max_stall_ms), 1),
            "prompt_tokens": s.prompt_tokens,
            "stop_reason": s.stop_reason.value,
            "attempts": self._attempts,
            "cpu_backend": backend.variant if backend else None,
            "cpu_backend_library": backend.library if backend else None,
            "frozen": bool(getattr(sys, "frozen", False)),
            "window_shown_at": self._shown_at,  # time.monotonic(), comparable with the caller's clock on Linux
            "model_loaded_at": self._loaded_at,
        }
        if self._started is not None and self._shown_at is not None and self._loaded_at is not None:
            report["window_shown_s"] = round(self._shown_at - self._started, 3)
            report["model_loaded_s"] = round(self._loaded_at - self._started, 3)
        if not report["ok"]:
            report["error"] = f"only {s.completion_tokens} tokens streamed (need {MIN_TOKENS})"
        if self._indexing is not None:
            indexing = report["indexing"] = self._indexing.report()
            if indexing["state"] != "ready":
                report["ok"] = False
                report.setdefault("error", f"the document was not indexed: {indexing}")
        with tempfile.TemporaryDirectory(prefix="tern-self-test-") as scratch:
            checks = (
                ("history", history_round_trip), ("pdf", pdf_in_child), ("image", image_in_child), ("tls", tls_trust),
            )  # fmt: skip
            for name, check in checks:
                try:
                    report[name] = check(Path(scratch))
                except Exception as exc:  # each check reports its own failure; the others still run
                    report[name] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                    report["ok"] = False
                    report.setdefault("error", f"{name} check failed: {exc}")
        self._finish(report)

    def _finish(self, report: dict[str, object]) -> None:
        self._heartbeat.stop()
        self._deadline.stop()
        if self._indexing is not None:
            self._indexing.close()
        self.exit_code = 0 if report.get("ok") else 1
        if sys.stdout is not None:  # a windowed build on Windows has none; the log has the report
            print(json.dumps(report), flush=True)
        logging.getLogger("tern.self_test").info("Self-test: %s", json.dumps(report))
        QApplication.instance().quit()  # type: ignore[union-attr]


class _Indexing(QObject):
    """A long PDF read into a scratch encrypted history (its key never stored), beside the chat."""

    done = Signal()

    def __init__(self, parent: QObject) -> None:
        super().__init__(parent)
        self._scratch = Path(tempfile.mkdtemp(prefix="tern-self-test-index-"))
        self._pdf = self._scratch / "long.pdf"
        write_pdf(
            self._pdf,
            [
                f"Page {n}. " + "The keeper logs the weather and trims the wick. " * 40
                for n in range(1, INDEX_PAGES + 1)
            ],
        )
        self._history = HistoryService(self._scratch / "history.db", self)
        self._indexer = DocumentService(self._history, parent=self)
        self._history.start_thread()
        self._indexer.start()
        self._history.ready.connect(self._attach)
        self._indexer.state_changed.connect(self._on_state)
        self.finished = False
        self._state = "not started"
        self._error = ""
        self._started = 0.0
        self._seconds = 0.0

    def start(self) -> None:
        """Open the scratch history; the PDF is attached once it is open."""
        self._started = time.perf_counter()
        self._history.open_with_key(keys.new_key())

    def _attach(self) -> None:
        self._history.ensure_conversation("", lambda cid: self._indexer.attach(cid, [self._pdf]))

    def _on_state(self, _doc: int, state: str, error: str) -> None:
        self._state, self._error = state, error
        if state in ("ready", "failed") and not self.finished:
            self.finished = True
            self._seconds = time.perf_counter() - self._started
            self.done.emit()

    def report(self) -> dict[str, object]:
        """The document's final state and how long reading it took."""
        return {"pages": INDEX_PAGES, "state": self._state, "error": self._error, "s": round(self._seconds, 1)}

    def close(self) -> None:
        """Stop indexing, close the scratch history and delete it."""
        self._indexer.shutdown()
        self._history.shutdown()
        shutil.rmtree(self._scratch, ignore_errors=True)


def write_pdf(path: Path, pages: list[str]) -> None:
    """A PDF with one page per text."""
    writer = QPdfWriter(str(path))
    writer.setPageSize(QPageSize(QPageSize.PageSizeId.A4))
    writer.setResolution(72)
    painter = QPainter(writer)
    for n, text in enumerate(pages):
        if n:
            writer.newPage()
        painter.drawText(QRectF(50, 50, 480, 700), Qt.TextFlag.TextWordWrap, text)
    painter.end()


def history_round_trip(scratch: Path) -> dict[str, object]:
    """Write a message to a new encrypted history, close it, open it again with the key from the keychain."""
    db = scratch / "history.db"
    in_keychain = keys.keyring_usable()
    key = keys.load_or_create_key(db) if in_keychain else keys.new_key()
    try:
        conn = open_database(db, key)
        store = ConversationStore(conn)
        conversation = store.create_conversation("Self-test")
        store.add_message(conversation, None, "user", MARKER)
        conn.close()
        again = keys.load_or_create_key(db) if in_keychain else key
        conn = open_database(db, again)
        stored = [m.content for m in ConversationStore(conn).current_path(conversation)]
        conn.close()
    finally:
        if in_keychain:
            keys.forget_key(db)
    if stored != [MARKER]:
        raise AssertionError(f"read back {stored!r}")
    if MARKER.encode() in db.read_bytes():
        raise AssertionError("the message is on disk in the clear")
    import keyring

    return {"ok": True, "keychain": type(keyring.get_keyring()).__module__ if in_keychain else None}


def pdf_in_child(scratch: Path) -> dict[str, object]:
    """Draw a two-page PDF and read it with the document reader, in its child process."""
    path = scratch / "self-test.pdf"
    write_pdf(path, ["A first page.", MARKER])
    started = time.perf_counter()
    try:
        result = ingest(path, time_limit_s=60)
    except IngestError as exc:
        raise AssertionError(str(exc)) from exc
    pages = [c.page for c in result.chunks if MARKER in " ".join(c.text.split())]
    if result.pages != 2 or pages != [2]:
        raise AssertionError(f"read {result.pages} pages; the marker was on pages {pages}")
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000)}


def image_in_child(scratch: Path) -> dict[str, object]:
    """Render a PDF page to an image and read it back, in the image reader's child (Pillow, PDFium)."""
    from app.core.images import ImageReader

    path = scratch / "self-test-image.pdf"
    write_pdf(path, ["A page drawn as a picture."])
    started = time.perf_counter()
    with ImageReader() as reader:
        page = reader.pdf_page(path, 0, 400)
        again = reader.prepare(page.data, "page.png")
        pixels = reader.pixels(again.data, 200)
    if max(page.width, page.height) != 400 or len(pixels.rgb) != pixels.width * pixels.height * 3:
        raise AssertionError(f"the page came out {page.width} x {page.height}, its pixels {len(pixels.rgb)} bytes")
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000), "size": [page.width, page.height]}


def tls_trust(_scratch: Path) -> dict[str, object]:
    """The certificate authorities a download's TLS would verify against (the hub client's own context)."""
    import httpx2

    context = httpx2.create_ssl_context()
    authorities = context.cert_store_stats()["x509_ca"]
    folder = ssl.get_default_verify_paths().capath  # a hashed folder is read lazily, so count its files
    if not authorities and folder and Path(folder).is_dir():
        authorities = sum(1 for f in Path(folder).iterdir() if f.name.endswith(".0"))
    if authorities < 20:
        raise AssertionError(f"only {authorities} certificate authorities are trusted")
    return {"ok": True, "authorities": authorities}
