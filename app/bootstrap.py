"""Start-up in one documented order.

paths → network gate (offline by default) → logging → crash handler →
settings → QApplication → services (the inference thread) → main window →
event loop; shutdown runs the same list backwards.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app import APP_ID, APP_NAME, __version__

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from app.crash_handler import CrashHandler
    from app.ui.main_window import MainWindow
    from app.workers.inference_worker import InferenceThread

log = logging.getLogger("tern.app")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog=APP_ID, description=f"{APP_NAME}: private, offline Gemma assistant")
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--model", type=Path, help="GGUF file to load instead of the saved choice")
    parser.add_argument("--self-test", action="store_true", help="run a headless end-to-end check, print JSON, exit")
    parser.add_argument("--no-err-windows", action="store_true", help="report errors in the log only, never in dialogs")
    parser.add_argument("--debug", action="store_true", help="verbose logging, llama.cpp's included")
    return parser.parse_args(argv)


@dataclass
class Session:
    """A started app: what `run` drives and shuts down."""

    app: QApplication
    window: MainWindow
    inference: InferenceThread
    crash: CrashHandler
    log_file: Path


def start(args: argparse.Namespace) -> Session:
    """Everything up to the event loop, in order."""
    from app.core.paths import AppPaths

    paths = AppPaths.default()
    paths.create()

    from app.core.models import network  # sets HF_HUB_OFFLINE and closes the only door to the hub

    network.install()

    from app import logging_setup

    log_file = logging_setup.configure(paths.logs, debug=args.debug)
    log.info("%s %s starting; data in %s", APP_NAME, __version__, paths.data)

    from app.crash_handler import CrashHandler

    crash = CrashHandler(paths.logs, show_dialogs=not args.no_err_windows)
    crash.install()

    from PySide6.QtWidgets import QApplication

    from app.settings import Settings

    settings = Settings(paths.settings_file)
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setApplicationName(APP_NAME)
    app.setApplicationVersion(__version__)
    QApplication.setDesktopFileName(APP_ID)
    logging_setup.route_qt_messages()

    from app.ui.main_window import MainWindow
    from app.workers.inference_worker import InferenceThread

    inference = InferenceThread(paths.models)
    inference.start()
    # The self-test chats without history, so it never writes to the user's conversations.
    window = MainWindow(
        settings, inference, paths, show_dialogs=not args.no_err_windows, open_history=not args.self_test
    )
    window.show()
    if crash.previous_run_crashed:
        window.show_crash_notice(crash.crash_log)
    window.load_model(args.model or settings.model_path())
    return Session(app, window, inference, crash, log_file)  # type: ignore[arg-type]


def shutdown(session: Session) -> None:
    """Close the window, join the worker, and mark the run as cleanly ended."""
    session.window.close()
    if not session.inference.shutdown():
        # A thread still inside llama.cpp cannot be joined; leave the run marker so the
        # next start reports it, and end the process before Qt aborts on the live thread.
        log.critical("The inference thread did not stop; exiting without cleanup")
        logging.shutdown()
        os._exit(1)
    session.crash.clean_exit()
    log.info("Exited cleanly; log at %s", session.log_file)


def run(argv: list[str] | None = None) -> int:
    """Run the app; returns the process exit code."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        args.no_err_windows = True
    session = start(args)
    probe = None
    if args.self_test:
        from app.self_test import SelfTest

        probe = SelfTest(session.window)
        probe.start()
    try:
        code = session.app.exec()
    finally:
        shutdown(session)
    return probe.exit_code if probe is not None else code
