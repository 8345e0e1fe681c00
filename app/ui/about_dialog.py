"""Help → About Tern: versions, where the files are, and the licences."""

from __future__ import annotations

import html
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTabWidget,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME, __version__
from app.core.paths import AppPaths
from app.licences import STARTER_MODEL_NOTICE
from app.services.about import AboutDetails
from app.ui.app_icon import app_icon


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(
        f"<tr><td style='padding-right:14px'><b>{html.escape(k)}</b></td><td>{v}</td></tr>" for k, v in rows
    )
    return f"<table cellspacing='0' cellpadding='3'>{cells}</table>"


def _folder_link(path: Path) -> str:
    url = QUrl.fromLocalFile(str(path)).toString()
    return f"<a href='{html.escape(url)}'>{html.escape(str(path))}</a>"


class AboutDialog(QDialog):
    """Versions, folders and licences."""

    def __init__(
        self, paths: AppPaths, log_file: Path | None, details: AboutDetails, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"About {APP_NAME}")
        self._details = details
        self._versions = details.versions

        icon = QLabel()
        icon.setPixmap(app_icon().pixmap(72, 72))
        title = QLabel(
            f"<h2 style='margin:0'>{APP_NAME} {html.escape(__version__)}</h2>"
            "<p>A private assistant for Gemma models. Everything runs on this computer; "
            "nothing you type or attach leaves it.</p>"
        )
        title.setWordWrap(True)
        header = QHBoxLayout()
        header.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        header.addWidget(title, 1)

        self.tabs = QTabWidget()
        versions = self._browser(_table([(k, html.escape(v)) for k, v in self._versions]))
        versions.setAccessibleName("Versions")
        versions.setAccessibleDescription("The versions of Tern and of the parts it is built on.")
        self.tabs.addTab(versions, "Versions")
        folders = [
            ("History and documents", _folder_link(paths.data)),
            ("Models", _folder_link(paths.models)),
            ("Settings", _folder_link(paths.config)),
            ("Logs", _folder_link(log_file.parent if log_file else paths.logs)),
        ]
        places = self._browser(_table(folders))
        places.setAccessibleName("Folders")
        places.setAccessibleDescription("Where your history, models, settings and logs are kept; a link opens one.")
        self.tabs.addTab(places, "Folders")
        self.tabs.addTab(self._licences(), "Licences")
        self.tabs.setAccessibleName("About")
        self.tabs.setAccessibleDescription("Versions, where Tern keeps its files, and the licences.")

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        copy = QPushButton("Copy versions")
        copy.setToolTip("Copy the versions to the clipboard, to paste into a bug report.")
        copy.clicked.connect(self._copy_versions)
        buttons.addButton(copy, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.rejected.connect(self.reject)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(buttons)
        screen = self.screen() or QGuiApplication.primaryScreen()
        self.resize(QSize(640, 460).boundedTo(screen.availableGeometry().size() * 0.9))  # fits a small screen

    def _browser(self, body: str) -> QTextBrowser:
        browser = QTextBrowser()
        browser.setOpenLinks(False)
        browser.anchorClicked.connect(QDesktopServices.openUrl)
        browser.setHtml(body)
        return browser

    def _licences(self) -> QWidget:
        rows = [
            (
                f"{c.name} {c.version}",
                html.escape(c.licence) + (f" <i>(includes {html.escape(c.carries)})</i>" if c.carries else ""),
            )
            for c in self._details.components
        ]
        intro = (
            f"<p>{APP_NAME} is free software under the Apache License 2.0.</p>"
            f"<p><b>{html.escape(STARTER_MODEL_NOTICE)}</b></p><p>It is built on:</p>"
        )
        browser = self._browser(intro + _table(rows))
        browser.setAccessibleName("Licences")
        browser.setAccessibleDescription("Tern's licence and those of the parts it is built on.")
        texts = QPushButton("Show the licence texts…")
        texts.setToolTip("The full text of every licence, in a window of its own.")
        texts.clicked.connect(self._show_texts)
        page = QWidget()
        layout = QVBoxLayout(page)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(browser, 1)
        layout.addWidget(texts, 0, Qt.AlignmentFlag.AlignLeft)
        return page

    def _show_texts(self) -> None:
        dialog = QDialog(self)
        dialog.setWindowTitle("Licence texts")
        view = QPlainTextEdit(self._details.notice)
        view.setReadOnly(True)
        view.setAccessibleName("Licence texts")
        layout = QVBoxLayout(dialog)
        layout.addWidget(view)
        dialog.resize(720, 560)
        dialog.show()

    def _copy_versions(self) -> None:
        text = "\n".join(f"{k}: {v}" for k, v in self._versions)
        QGuiApplication.clipboard().setText(text)
