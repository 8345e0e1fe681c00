"""The open conversation's pane: notices, the messages, the composer, and Send/Stop, Regenerate and Attach.

It drives the `ChatSession` (send, stop, regenerate, edit) and follows its
state; the status line belongs to the window and is passed in. Editing a sent
message happens in the composer under an "Editing — Esc to cancel" bar:
the conversation stays as it is until the edit is sent, and cancelling gives
the composer back what it held before.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QStackedWidget, QVBoxLayout, QWidget

from app import APP_NAME
from app.core.chat.image import StoredImage
from app.services.images import ImageService
from app.settings import WRAP_CODE
from app.ui.chat_session import ChatSession
from app.ui.composer import Composer
from app.ui.conversation_view import ConversationView
from app.ui.editing_bar import EditingBar
from app.ui.image_tray import ImageTray
from app.ui.notice_bar import ChatNoticeBar, NoticeBar
from app.ui.tool_prompts import PermissionBar, ask_for_file

PLACEHOLDER = (
    f'<h2 align="center">{APP_NAME}</h2>'
    '<p align="center">A private assistant that runs entirely on this computer. Nothing you type leaves it.</p>'
)


@dataclass
class _Edit:
    """A sent message being edited in the composer."""

    row: int
    item_id: int  # the row's message, to notice when the conversation changed underneath
    draft: str  # what the composer held before, given back when the edit ends


class ChatPane(QWidget):
    """The messages above, the composer and its buttons below."""

    attach_requested = Signal()  # the Attach button: choose files for this conversation

    def __init__(self, session: ChatSession, status: QLabel) -> None:
        super().__init__()
        self._session = session
        self._status = status
        self._edit: _Edit | None = None
        self._sending = False
        self.view = ConversationView()
        self.view.setModel(session.model)
        self.view.placeholder_html = PLACEHOLDER
        self.pages = QStackedWidget()  # the messages, or the welcome page in place of an empty chat
        self.pages.addWidget(self.view)
        self._welcome: QWidget | None = None
        self._welcome_wanted = False
        self.notice = NoticeBar()
        self.chat_notice = ChatNoticeBar()
        self.editing_bar = EditingBar()
        self.composer = Composer()
        self.tray = ImageTray()
        self.images: ImageService | None = None  # set by the window: reads the images given to the composer
        self.send_button = QPushButton("Send")
        self.send_button.setMinimumWidth(80)
        self.regenerate_button = QPushButton("Regenerate")
        self.regenerate_button.setEnabled(False)
        self.attach_button = QPushButton("Attach…")
        self.think_button = QPushButton("Think")  # Gemma 4: think before answering, for this chat
        self.tools_button = QPushButton("Tools")  # Gemma 4: let the model call tools, for this chat
        for toggle in (self.think_button, self.tools_button):
            toggle.setCheckable(True)
            toggle.hide()
        self.permission_bar = PermissionBar()
        self._describe()
        self._lay_out()

        self.composer.submitted.connect(self.send)
        self.composer.recall_requested.connect(self._recall_last)
        self.composer.cancel_requested.connect(self.cancel_edit)
        self.composer.images_given.connect(self.add_images)
        self.tray.changed.connect(lambda: setattr(self.composer, "sends_empty", bool(self.tray.images)))
        self.editing_bar.cancel_requested.connect(self.cancel_edit)
        self.send_button.clicked.connect(self._send_or_stop)
        self.regenerate_button.clicked.connect(self.regenerate)
        self.attach_button.clicked.connect(self.attach_requested)
        self.think_button.toggled.connect(lambda on: session.options.set(thinking=on))
        self.tools_button.toggled.connect(lambda on: session.options.set(tools=on))
        session.options_changed.connect(self._show_options)
        session.permission_requested.connect(self.permission_bar.ask)
        session.file_requested.connect(lambda purpose: session.answer_file(ask_for_file(self, purpose)))
        self.permission_bar.answered.connect(session.answer_permission)
        self.view.edit_requested.connect(self.edit)
        self.view.regenerate_requested.connect(self.regenerate)
        self.view.status_message.connect(status.setText)
        self.view.delegate.version_requested.connect(session.switch_version)
        self.view.wrap_code_action.setChecked(session.settings.get(WRAP_CODE))
        self.view.wrap_code_action.toggled.connect(lambda wrap: session.settings.set(WRAP_CODE, wrap))
        session.busy_changed.connect(self._set_busy)
        session.status.connect(status.setText)
        session.message_shown.connect(self._scroll_to_row)
        session.conversation_shown.connect(self.chat_notice.follow)
        model = session.model
        model.rowsRemoved.connect(lambda _parent, first, _last: self._rows_removed(first))
        model.modelReset.connect(lambda: self._rows_removed(0))
        for change in (model.rowsInserted, model.rowsRemoved, model.modelReset):
            change.connect(self._show_page)

    def set_welcome(self, page: QWidget) -> None:
        """The page shown in place of an empty chat while `show_welcome(True)`."""
        self._welcome = page
        self.pages.addWidget(page)
        self._show_page()

    def show_welcome(self, wanted: bool) -> None:
        """Show the welcome page whenever the chat is empty (True), or never (False)."""
        self._welcome_wanted = wanted
        self._show_page()

    def _show_page(self) -> None:
        empty = self._session.model.rowCount() == 0
        welcome = self._welcome if self._welcome is not None and self._welcome_wanted and empty else None
        self.pages.setCurrentWidget(welcome or self.view)

    def _describe(self) -> None:
        """Names and descriptions for assistive technology."""
        for widget, name, description in (
            (self.send_button, "Send", "Send the message in the box (Enter); while an answer is written, stop it"),
            (self.regenerate_button, "Regenerate", "Write the last answer again; the earlier one stays as a version"),
            (self.attach_button, "Attach files", "Choose files or a folder for this chat to answer from"),
            (self.think_button, "Think", "Let the model think before it answers, in this chat (slower, often better)"),
            (
                self.tools_button,
                "Tools",
                "Let the model search your documents and history, calculate, tell the time and read a file you "
                "choose, in this chat (Settings → Tools chooses which, and which ask first)",
            ),
        ):
            widget.setAccessibleName(name)
            widget.setAccessibleDescription(description)
            widget.setToolTip(description)
        self.setAccessibleName("Chat")

    def _lay_out(self) -> None:
        buttons = QHBoxLayout()
        buttons.setContentsMargins(0, 0, 0, 0)
        buttons.addWidget(self.attach_button)
        buttons.addWidget(self.think_button)
        buttons.addWidget(self.tools_button)
        buttons.addStretch(1)
        buttons.addWidget(self.regenerate_button)
        buttons.addWidget(self.send_button)
        bottom = QVBoxLayout()
        bottom.setContentsMargins(10, 0, 10, 0)
        bottom.setSpacing(4)
        bottom.addWidget(self.permission_bar)
        bottom.addWidget(self.editing_bar)
        bottom.addWidget(self.tray)
        bottom.addWidget(self.composer)
        bottom.addLayout(buttons)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 8)
        layout.addWidget(self.notice)
        layout.addWidget(self.chat_notice)
        layout.addWidget(self.pages, 1)
        layout.addLayout(bottom)
        chain: list[QWidget] = [
            self.notice.dismiss_button,
            self.chat_notice.dismiss_button,
            self.view,
            self.view.reader,
            self.editing_bar.cancel_button,
            self.permission_bar.refuse_button,
            self.permission_bar.allow_button,
            self.composer,
            self.attach_button,
            self.think_button,
            self.tools_button,
            self.regenerate_button,
            self.send_button,
        ]
        for first, second in itertools.pairwise(chain):
            QWidget.setTabOrder(first, second)

    @property
    def editing_row(self) -> int:
        """The row of the message being edited, or -1."""
        return self._edit.row if self._edit is not None else -1

    def send(self, text: str) -> bool:
        """Add the user's message and ask for an answer; False (text kept) while one streams.

        While editing, the message replaces the edited one as its new version.
        """
        edit = self._edit
        if edit is not None and self._session.model.item(edit.row).id != edit.item_id:
            self._end_edit(restore_draft=False)  # cannot happen while rows are watched; never branch the wrong one
            return False
        if self.tray.blocked:
            self._status.setText(self.tray.blocked)
            return False
        self._sending = True  # the edited rows leave the view now: that is not the edit going away
        try:
            sent = self._session.send(text, edit.row if edit is not None else None, self.tray.images)
        finally:
            self._sending = False
        if not sent:
            return False
        self.tray.clear()
        self._end_edit(restore_draft=True)
        if edit is None:
            self.composer.clear()
        self.view.scroll_to_end()
        return True

    def add_images(self, sources: list[Path | tuple[bytes, str]]) -> None:
        """Read images given to the chat (dropped, pasted, attached) and put them above the composer."""
        if self.images is None or not sources:
            return
        self._status.setText("Reading the image…" if len(sources) == 1 else f"Reading {len(sources)} images…")

        def done(images: list[StoredImage], problems: list[str]) -> None:
            self.tray.add(images)
            self._status.setText("; ".join(problems) if problems else "")
            if problems:
                self.notice.show_warning("Not added: " + "; ".join(problems))

        self.images.prepare(sources, done)

    def regenerate(self) -> None:
        """A new version of the last answer; the old one stays as a version."""
        self._session.regenerate()
        self.view.scroll_to_end()

    def edit(self, row: int) -> None:
        """Put a sent message in the composer to edit; the conversation stays in view until it is sent."""
        text = self._session.edit(row)
        if not text:
            return
        draft = self._edit.draft if self._edit is not None else self.composer.toPlainText()
        self._edit = _Edit(row, self._session.model.item(row).id, draft)
        self.composer.editing = True
        self.composer.setPlainText(text)
        self.composer.moveCursor(self.composer.textCursor().MoveOperation.End)
        self.composer.setFocus()
        self.editing_bar.show()
        self.view.set_editing_row(row)
        self._status.setText("Editing: Enter sends it as a new version, Esc cancels")

    def cancel_edit(self) -> None:
        """Leave editing; the composer gets back what it held before."""
        if self._edit is not None:
            self._end_edit(restore_draft=True)
            self._status.setText("Edit cancelled")

    def _end_edit(self, restore_draft: bool) -> None:
        edit, self._edit = self._edit, None
        if edit is None:
            return
        self.composer.editing = False
        self.editing_bar.hide()
        self.view.set_editing_row(-1)
        if restore_draft:
            self.composer.setPlainText(edit.draft)
            self.composer.moveCursor(self.composer.textCursor().MoveOperation.End)

    def _rows_removed(self, first: int) -> None:
        """The message being edited left the view (another chat, another version): the edit ends, text kept."""
        if self._edit is not None and self._edit.row >= first and not self._sending:
            self._end_edit(restore_draft=False)
            self._status.setText("The message you were editing is no longer shown; your text is still in the box")

    def _send_or_stop(self) -> None:
        if self._session.busy:
            self._session.stop()
        else:
            self.composer.submit()

    def _show_options(self) -> None:
        """The Think and Tools buttons: shown for a model that has them, checked as the open chat chose."""
        options = self._session.options
        for button, on in ((self.think_button, options.current.thinking), (self.tools_button, options.current.tools)):
            button.setVisible(options.supported)
            button.blockSignals(True)
            button.setChecked(on)
            button.blockSignals(False)

    def _set_busy(self, busy: bool) -> None:
        if not busy:
            self.permission_bar.cancel()
        self.send_button.setText("Stop" if busy else "Send")
        self.send_button.setAccessibleName("Stop" if busy else "Send")
        model = self._session.model
        last = model.rowCount() - 1
        self.regenerate_button.setEnabled(not busy and last >= 0 and model.item(last).role == "assistant")
        if busy:
            self._status.setText("Generating…")

    def _recall_last(self) -> None:
        model = self._session.model
        for row in range(model.rowCount() - 1, -1, -1):
            if model.item(row).role == "user":
                self.edit(row)
                return

    def _scroll_to_row(self, row: int) -> None:
        if row >= self._session.model.rowCount() - 1:
            self.view.scroll_to_end()
        elif row >= 0:
            self.view.scroll_to_row(row)
