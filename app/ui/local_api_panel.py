"""Tools → Local API: the endpoint for IDEs, its address and key; the status bar item; the request log.

`LocalApiController` applies the saved settings at start (the endpoint stays
off until the user turns it on), keeps the status bar item up to date and
opens `LocalApiDialog`. `InboundLog` is the table of requests the endpoint
answered, shown in the model manager's Network activity tab beside the
requests Tern made.
"""

from __future__ import annotations

import time
from http import HTTPStatus
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, QTimer, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import settings as opts
from app.core.api.server import RequestRecord
from app.services.local_api import ApiSettings, ApiState, LocalApiService, parse_origins
from app.settings import Settings

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow

NO_KEY_WARNING = (
    "Without a key, any program on this computer can use the model through this port, and read what it "
    "answers. Turn the key off only for a client that cannot send one."
)
ABOUT = (
    "An OpenAI-compatible address for coding tools on this computer (Android Studio, Continue, JetBrains AI, "
    "curl). It answers with the model loaded in Tern, one request at a time; your own questions go first after "
    "the answer in progress. Only this computer can connect."
)


def api_settings(settings: Settings) -> ApiSettings:
    """The saved choices."""
    return ApiSettings(
        enabled=settings.get(opts.API_ENABLED),
        port=settings.get(opts.API_PORT),
        require_key=settings.get(opts.API_REQUIRE_KEY),
        origins=parse_origins(settings.get(opts.API_ORIGINS)),
        keep_history=settings.get(opts.API_KEEP_HISTORY),
    )


class LocalApiController(QObject):
    """Starts the endpoint as saved, shows its state in the status bar, and opens its dialog."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)  # a QObject on the GUI thread: the service's signals are queued to it
        self._window = window
        self._settings = window.settings
        self.service: LocalApiService = window.services.api
        self.status = QLabel()
        self.status.setAccessibleName("Local API status")
        self.status.hide()
        self._serving = ""
        self.service.state_changed.connect(self._show)
        self.service.serving_changed.connect(self._on_serving)
        self.service.configure(api_settings(self._settings), self._settings.sampling())

    def open_dialog(self) -> LocalApiDialog:
        """Tools → Local API."""
        dialog = LocalApiDialog(self.service, self._settings, self._window)
        dialog.show()
        return dialog

    def settings_changed(self) -> None:
        """The sampling settings changed: requests that do not choose use the new ones."""
        self.service.set_sampling(self._settings.sampling())

    @Slot(str)
    def _on_serving(self, client: str) -> None:
        self._serving = client
        self._show(self.service.state)

    @Slot(object)
    def _show(self, state: ApiState) -> None:
        if not state.running and not state.error:
            self.status.hide()
            return
        if state.error:
            text = "Local API: off (port not free)"
        elif self._serving:
            text = f"Local API: answering {self._serving}"
        else:
            text = f"Local API on port {state.address.rsplit(':', 1)[-1].split('/')[0]}"
        self.status.setText(text)
        self.status.setToolTip(state.error or f"{state.address} (Tools → Local API)")
        self.status.show()


class LocalApiDialog(QDialog):
    """Turn the endpoint on or off, choose its port, copy its address and key, make a new key."""

    def __init__(self, service: LocalApiService, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Local API")
        self._service = service
        self._settings = settings
        about = QLabel(ABOUT)
        about.setWordWrap(True)
        self.enabled = QCheckBox("Serve the loaded model at a local address")
        self.enabled.setChecked(settings.get(opts.API_ENABLED))
        self.port = QSpinBox()
        self.port.setRange(int(opts.API_PORT.minimum or 1024), int(opts.API_PORT.maximum or 65535))
        self.port.setValue(settings.get(opts.API_PORT))
        self.port.setToolTip("The port clients connect to on 127.0.0.1. Change it if another program uses it.")
        self.address = QLineEdit()
        self.address.setReadOnly(True)
        self.key = QLineEdit()
        self.key.setReadOnly(True)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.show_key = QPushButton("Show")
        self.show_key.setCheckable(True)
        self.show_key.toggled.connect(self._reveal)
        self.copy_address = QPushButton("Copy")
        self.copy_address.setToolTip("Copy the address (the base URL an OpenAI client needs)")
        self.copy_address.clicked.connect(lambda: self._copy(self.address.text()))
        self.copy_key = QPushButton("Copy")
        self.copy_key.setToolTip("Copy the key (the client sends it as 'Authorization: Bearer <key>')")
        self.copy_key.clicked.connect(lambda: self._copy(self.key.text()))
        self.new_key = QPushButton("New key")
        self.new_key.setToolTip("Make a new key; clients with the old one are refused from now on.")
        self.new_key.clicked.connect(service.regenerate_key)
        self.require_key = QCheckBox("Require the key")
        self.require_key.setChecked(settings.get(opts.API_REQUIRE_KEY))
        self.warning = QLabel(NO_KEY_WARNING)
        self.warning.setWordWrap(True)
        self.warning.setStyleSheet("color: #a15c00;")
        self.origins = QLineEdit(settings.get(opts.API_ORIGINS))
        self.origins.setPlaceholderText("none (web pages cannot call it)")
        self.origins.setToolTip(
            "Web pages are refused. List the origins of web apps you trust to call this address, such as "
            "http://localhost:3000, separated by spaces."
        )
        self.keep = QCheckBox("Keep API conversations in my history")
        self.keep.setChecked(settings.get(opts.API_KEEP_HISTORY))
        self.keep.setToolTip(
            "Off: what coding tools send and receive is not saved anywhere. On: each API conversation is kept, "
            "encrypted, like your own chats, named after the client."
        )
        self.state = QLabel()
        self.state.setWordWrap(True)
        form = QFormLayout()
        form.addRow(self.enabled)
        form.addRow("Port:", self.port)
        form.addRow("Address:", _row(self.address, self.copy_address))
        form.addRow("Key:", _row(self.key, self.show_key, self.copy_key, self.new_key))
        form.addRow(self.require_key)
        form.addRow(self.warning)
        form.addRow("Allowed web origins:", self.origins)
        form.addRow(self.keep)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Apply | QDialogButtonBox.StandardButton.Close)
        self.apply_button = buttons.button(QDialogButtonBox.StandardButton.Apply)
        self.apply_button.clicked.connect(self.apply)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(about)
        layout.addLayout(form)
        layout.addWidget(self.state)
        layout.addWidget(buttons)
        self.require_key.toggled.connect(lambda on: self.warning.setVisible(not on))
        self.warning.setVisible(not self.require_key.isChecked())
        service.state_changed.connect(self._show)
        self._show(service.state)
        self.resize(620, self.sizeHint().height())

    def apply(self) -> None:
        """Save the choices and start, restart or stop the endpoint."""
        s = self._settings
        s.set(opts.API_ENABLED, self.enabled.isChecked())
        s.set(opts.API_PORT, self.port.value())
        s.set(opts.API_REQUIRE_KEY, self.require_key.isChecked())
        s.set(opts.API_ORIGINS, " ".join(sorted(parse_origins(self.origins.text()))))
        s.set(opts.API_KEEP_HISTORY, self.keep.isChecked())
        self.state.setText("Applying…")
        self._service.configure(api_settings(s), s.sampling())

    @Slot(object)
    def _show(self, state: ApiState) -> None:
        self.address.setText(state.address or f"http://127.0.0.1:{self.port.value()}/v1")
        self.key.setText(state.key)
        if state.error:
            text = state.error
        elif state.running:
            text = "On: clients on this computer can connect." + ("" if state.require_key else " No key is asked for.")
        else:
            text = "Off: nothing is listening."
        if state.key and not state.key_remembered:
            text += " No keychain is available, so this key lasts until Tern closes."
        self.state.setText(text)

    def _reveal(self, shown: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hide" if shown else "Show")

    @staticmethod
    def _copy(text: str) -> None:
        clipboard = QGuiApplication.clipboard()
        if clipboard is not None and text:
            clipboard.setText(text)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        layout.addWidget(w, 1 if i == 0 else 0)
    return box


def _phrase(status: int) -> str:
    if status == 499:
        return "Client went away"
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


class InboundLog(QWidget):
    """Requests the local API answered: time, client, request, tokens, answer."""

    def __init__(self, service: LocalApiService) -> None:
        super().__init__()
        self._service = service
        self.title = QLabel("Requests to Tern's local API (Tools → Local API)")
        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Time", "Client", "Request", "Tokens", "Answer"])
        self.table.verticalHeader().hide()
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table, 1)
        self._soon = QTimer(self)
        self._soon.setSingleShot(True)
        self._soon.setInterval(200)
        self._soon.timeout.connect(self.refresh)
        service.request_logged.connect(self._logged)
        self.refresh()

    @Slot(object)
    def _logged(self, _record: RequestRecord) -> None:
        self._soon.start()  # many requests at once: one refresh

    def refresh(self) -> None:
        """Show the log, newest first."""
        records = list(reversed(self._service.recent_requests()))
        self.table.setRowCount(len(records))
        for row, r in enumerate(records):
            tokens = ""
            if r.prompt_tokens or r.completion_tokens:
                tokens = f"{r.prompt_tokens:,} in ({r.cached_tokens:,} cached), {r.completion_tokens:,} out"
            answer = f"{r.status} {_phrase(r.status)}" + (f" · {r.duration_ms / 1000:.1f} s" if r.duration_ms else "")
            cells = [
                time.strftime("%H:%M:%S", time.localtime(r.when)),
                r.client,
                f"{r.method} {r.path}",
                tokens,
                answer,
            ]
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setToolTip(r.note or text)
                self.table.setItem(row, col, item)
        for col in range(4):
            self.table.resizeColumnToContents(col)
