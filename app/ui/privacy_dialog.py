"""Privacy and history: where the history lives, how it is encrypted, passphrase, backup, restore, delete."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app import settings as opts
from app.services.history import HistoryService
from app.settings import Settings
from app.ui.lock_page import MIN_PASSPHRASE

AUTO_LOCK_CHOICES = [
    (0, "Never"),
    (5, "After 5 minutes idle"),
    (15, "After 15 minutes idle"),
    (60, "After 1 hour idle"),
]


class PassphraseDialog(QDialog):
    """Asks for a passphrase, twice when it is a new one."""

    def __init__(self, title: str, text: str, confirm: bool, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self._confirm = confirm
        self.passphrase = QLineEdit()
        self.passphrase.setEchoMode(QLineEdit.EchoMode.Password)
        self.passphrase.setAccessibleName("Passphrase")
        self.passphrase.setAccessibleDescription(text)
        self.again = QLineEdit()
        self.again.setEchoMode(QLineEdit.EchoMode.Password)
        self.again.setAccessibleName("Passphrase again")
        self.again.setAccessibleDescription("The same passphrase a second time, to be sure it has no typo.")
        self.error = QLabel()
        self.error.setStyleSheet("color: #b91c1c;")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self._check)
        buttons.rejected.connect(self.reject)
        label = QLabel(text)
        label.setWordWrap(True)
        form = QFormLayout()
        form.addRow("Passphrase", self.passphrase)
        if confirm:
            form.addRow("Again", self.again)
        layout = QVBoxLayout(self)
        layout.addWidget(label)
        layout.addLayout(form)
        layout.addWidget(self.error)
        layout.addWidget(buttons)

    def _check(self) -> None:
        text = self.passphrase.text()
        if self._confirm and len(text) < MIN_PASSPHRASE:
            self.error.setText(f"Use at least {MIN_PASSPHRASE} characters.")
        elif self._confirm and text != self.again.text():
            self.error.setText("The two passphrases differ.")
        elif text:
            self.accept()

    @classmethod
    def ask(cls, parent: QWidget, title: str, text: str, confirm: bool) -> str | None:
        """The passphrase, or None when cancelled."""
        dialog = cls(title, text, confirm, parent)
        return dialog.passphrase.text() if dialog.exec() else None


class PrivacyDialog(QDialog):
    """Shows where and how the history is kept, and the operations on all of it."""

    def __init__(self, history: HistoryService, settings: Settings, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Privacy and history")
        self.setMinimumWidth(540)
        self._history = history
        self._settings = settings
        passphrase = history.uses_passphrase

        self.location = QLabel(str(history.db_path))
        self.location.setWordWrap(True)
        self.encryption = QLabel(
            "Encrypted with SQLCipher (AES-256), the search index included. "
            + (
                "The key is derived from your passphrase (scrypt); it is never stored."
                if passphrase
                else "The key is a random 256-bit key kept in your system keychain."
            )
            + " Nothing leaves this computer."
        )
        self.encryption.setWordWrap(True)
        self.passphrase_button = QPushButton("Change passphrase…" if passphrase else "Require a passphrase…")
        self.remove_passphrase = QPushButton("Remove passphrase")
        self.remove_passphrase.setVisible(passphrase)
        self.auto_lock = QComboBox()
        for minutes, label in AUTO_LOCK_CHOICES:
            self.auto_lock.addItem(label, minutes)
        current = self.auto_lock.findData(settings.get(opts.AUTO_LOCK_MINUTES))
        self.auto_lock.setCurrentIndex(max(0, current))
        self.auto_lock.setEnabled(passphrase)
        self.auto_lock.setToolTip(
            "Lock the history after this long without keyboard or mouse use. Locking needs a passphrase: "
            "the keychain would open the history again at once."
        )
        self.auto_lock.setAccessibleName("Lock automatically")
        backup = QPushButton("Back up…")
        restore = QPushButton("Restore from backup…")
        delete = QPushButton("Delete all history…")
        for button, tip in (
            (
                self.passphrase_button,
                "Encrypt the history with a passphrase you type at each start, instead of a key in the keychain.",
            ),
            (self.remove_passphrase, "Go back to a key kept in the system keychain: no passphrase to type."),
            (backup, "Write an encrypted copy of every conversation to a file, protected by its own passphrase."),
            (restore, "Replace the history with a backup; the current history file is kept beside it."),
            (delete, "Erase every conversation and the key that opens them. This cannot be undone."),
        ):
            button.setToolTip(tip)

        row = QHBoxLayout()
        row.addWidget(self.passphrase_button)
        row.addWidget(self.remove_passphrase)
        row.addStretch(1)
        backups = QHBoxLayout()
        backups.addWidget(backup)
        backups.addWidget(restore)
        backups.addStretch(1)
        backups.addWidget(delete)
        form = QFormLayout()
        form.addRow("Location", self.location)
        form.addRow("Encryption", self.encryption)
        form.addRow("Passphrase", row)
        form.addRow("Lock", self.auto_lock)
        form.addRow("Backup", backups)
        close = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(close)
        for button in (self.passphrase_button, self.remove_passphrase, backup, restore, delete):
            button.setEnabled(history.is_open)

        self.passphrase_button.clicked.connect(self._set_passphrase)
        self.remove_passphrase.clicked.connect(self._remove_passphrase)
        self.auto_lock.currentIndexChanged.connect(
            lambda: settings.set(opts.AUTO_LOCK_MINUTES, int(self.auto_lock.currentData()))
        )
        backup.clicked.connect(self._backup)
        restore.clicked.connect(self._restore)
        delete.clicked.connect(self._delete_all)

    def _set_passphrase(self) -> None:
        text = PassphraseDialog.ask(
            self,
            "History passphrase",
            "Tern will ask for this passphrase each time it starts, and after it locks. "
            "If you forget it, your history cannot be recovered.",
            confirm=True,
        )
        if text:
            self._history.change_passphrase(text)
            self.accept()

    def _remove_passphrase(self) -> None:
        self._history.change_passphrase(None)
        self._settings.set(opts.AUTO_LOCK_MINUTES, 0)
        self.accept()

    def _backup(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Back up history", str(Path.home() / "tern-history.backup"), "Tern backups (*.backup)"
        )
        if not path:
            return
        text = PassphraseDialog.ask(
            self, "Backup passphrase", "The backup is encrypted with this passphrase, so it opens anywhere.", True
        )
        if text:
            self._history.write_backup(Path(path), text)
            self.accept()

    def _restore(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Restore history", str(Path.home()), "Tern backups (*.backup)")
        if not path:
            return
        answer = QMessageBox.question(
            self,
            "Restore history",
            "Replace your current history with this backup? The current history file is kept beside it.",
        )
        if answer != QMessageBox.StandardButton.Yes:
            return
        text = PassphraseDialog.ask(self, "Backup passphrase", "The passphrase this backup was made with.", False)
        if text:
            self._history.restore_backup(Path(path), text)
            self.accept()

    def _delete_all(self) -> None:
        answer = QMessageBox.warning(
            self,
            "Delete all history",
            "Erase every conversation and its key? This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        if answer == QMessageBox.StandardButton.Yes:
            self._history.delete_everything()
            self.accept()
