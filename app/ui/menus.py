"""The main window's menus and their shortcuts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtGui import QAction, QKeySequence

from app import APP_NAME

if TYPE_CHECKING:
    from app.ui.main_window import MainWindow


def build_menus(window: MainWindow) -> QAction:
    """File, Chat, Tools, View and Help menus; returns the Lock action (it explains itself without a passphrase)."""
    file_menu = window.menuBar().addMenu("&File")
    open_model = QAction("&Open model file…", window)
    open_model.setShortcut(QKeySequence.StandardKey.Open)
    open_model.triggered.connect(window.choose_model)
    starter = QAction("Use the &starter model", window)
    starter.triggered.connect(lambda: window.load_model(None))
    lock_action = QAction("&Lock history", window)
    lock_action.setShortcut(QKeySequence("Ctrl+L"))
    lock_action.setStatusTip("Close your history until its passphrase is typed again.")
    lock_action.triggered.connect(window.lock)
    quit_action = QAction("&Quit", window)
    quit_action.setShortcut(QKeySequence.StandardKey.Quit)
    quit_action.triggered.connect(window.close)
    for action in (open_model, starter, lock_action, quit_action):
        file_menu.addAction(action)
    chat_menu = window.menuBar().addMenu("&Chat")
    new_chat = QAction("&New chat", window)
    new_chat.setShortcut(QKeySequence.StandardKey.New)
    new_chat.triggered.connect(window.new_chat)
    search = QAction("S&earch conversations", window)
    search.setShortcut(QKeySequence("Ctrl+K"))
    search.triggered.connect(lambda: window.sidebar.search.setFocus())
    stop = QAction("&Stop", window)
    stop.setShortcut(QKeySequence("Esc"))
    stop.triggered.connect(window.stop)
    regenerate = QAction("&Regenerate", window)
    regenerate.setShortcut(QKeySequence("Ctrl+R"))
    regenerate.triggered.connect(window.regenerate)
    export_md = QAction("Export as &Markdown…", window)
    export_md.triggered.connect(lambda: window.export_conversation(None, "markdown"))
    export_json = QAction("Export as &JSON…", window)
    export_json.triggered.connect(lambda: window.export_conversation(None, "json"))
    for action in (new_chat, search, stop, regenerate, export_md, export_json):
        chat_menu.addAction(action)
    prefs = QAction("&Settings…", window)
    prefs.setShortcut(QKeySequence.StandardKey.Preferences)
    prefs.triggered.connect(window.open_settings)
    privacy = QAction("&Privacy and history…", window)
    privacy.triggered.connect(window.open_privacy)
    models = QAction("M&odels…", window)
    models.setShortcut(QKeySequence("Ctrl+M"))
    models.triggered.connect(window.open_models)
    local_api = QAction("&Local API…", window)
    local_api.setStatusTip("Serve the loaded model to coding tools on this computer (OpenAI-compatible).")
    local_api.triggered.connect(window.open_local_api)
    tools = window.menuBar().addMenu("&Tools")
    for action in (models, local_api, prefs, privacy):
        tools.addAction(action)
    panel = window.info_panel.toggleViewAction()
    panel.setText("&Model details")
    panel.setShortcut(QKeySequence("Ctrl+I"))
    panel.setStatusTip("Memory, buffers and cache of the loaded model: detail for developers.")
    view = window.menuBar().addMenu("&View")
    view.addAction(panel)
    view.addAction(window.view.wrap_code_action)
    about = QAction(f"&About {APP_NAME}", window)
    about.setMenuRole(QAction.MenuRole.AboutRole)
    about.triggered.connect(window.open_about)
    window.menuBar().addMenu("&Help").addAction(about)
    return lock_action
