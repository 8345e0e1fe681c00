"""Start-up in one documented order.

paths → one Tern per profile (a later launch hands over its files and exits)
→ network gate (offline by default) → logging → crash handler → settings →
QApplication → services (`app.services`: history, documents, turns, each on
its own thread) → main window → event loop; shutdown runs the same list
backwards, each step bounded.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from app import APP_ID, APP_NAME, DESKTOP_ID, __version__

if TYPE_CHECKING:
    from PySide6.QtWidgets import QApplication

    from app.crash_handler import CrashHandler
    from app.services import Services
    from app.single_instance import SingleInstance
    from app.ui.main_window import MainWindow

log = logging.getLogger("tern.app")


def parse_args(argv: list[str]) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog=APP_ID, description=f"{APP_NAME}: private, offline Gemma assistant")
    parser.add_argument("files", nargs="*", type=Path, help="GGUF models to import, or documents to chat about")
    parser.add_argument("--version", action="version", version=f"{APP_NAME} {__version__}")
    parser.add_argument("--model", type=Path, help="GGUF file to load instead of the saved choice")
    parser.add_argument("--self-test", action="store_true", help="run a headless end-to-end check, print JSON, exit")
    parser.add_argument("--no-err-windows", action="store_true", help="report errors in the log only, never in dialogs")
    parser.add_argument("--debug", action="store_true", help="verbose logging, llama.cpp's included")
    parser.add_argument(
        "--install-desktop-entry", action="store_true", help="add Tern to this user's application menu, then exit"
    )
    parser.add_argument(
        "--uninstall-desktop-entry", action="store_true", help="remove what --install-desktop-entry added, then exit"
    )
    return parser.parse_args(argv)


@dataclass
class Session:
    """A started app: what `run` drives and shuts down."""

    app: QApplication
    window: MainWindow
    services: Services
    crash: CrashHandler
    log_file: Path
    instance: SingleInstance | None


def _hand_over(instance: SingleInstance, files: list[Path]) -> int:
    """Give `files` to the Tern already running on this profile; the exit code for this launch."""
    from PySide6.QtCore import QCoreApplication

    _app = QCoreApplication.instance() or QCoreApplication([sys.argv[0]])  # the local socket needs one
    if instance.send(files):
        return 0
    pid = instance.holder_pid()
    message = (
        f"{APP_NAME} is already running (process {pid}) but does not answer. "
        "Wait for it, or end that process and start Tern again."
    )
    print(message, file=sys.stderr)
    return 1


def start(args: argparse.Namespace, instance: SingleInstance | None = None) -> Session:
    """Everything up to the event loop, in order. `instance` has claimed the profile, when given."""
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
    QApplication.setDesktopFileName(DESKTOP_ID)
    logging_setup.route_qt_messages()

    from app.services import Services
    from app.single_instance import FileOpenEvents
    from app.ui.app_icon import app_icon
    from app.ui.main_window import MainWindow

    QApplication.setWindowIcon(app_icon())
    services = Services.build(paths)
    services.start()
    # The self-test chats without history, so it never writes to the user's conversations.
    window = MainWindow(
        settings, services, paths, show_dialogs=not args.no_err_windows, open_history=not args.self_test
    )
    window.log_file = log_file
    window.show()
    if crash.previous_run_crashed:
        log.warning("The previous run did not exit cleanly; see %s", crash.crash_log)
        window.show_crash_notice(crash.crash_log)
    window.load_model(args.model or settings.model_path())
    if instance is not None:
        instance.listen()
        instance.files_received.connect(window.open_files)
    opener = FileOpenEvents(app)
    app.installEventFilter(opener)
    opener.files_received.connect(window.open_files)
    if args.files:
        window.open_files(args.files)
    return Session(app, window, services, crash, log_file, instance)  # type: ignore[arg-type]


def shutdown(session: Session) -> None:
    """Close the window, stop the services, give up the profile, and mark the run as cleanly ended."""
    session.window.close()
    if not session.services.shutdown():
        # A thread still inside llama.cpp or a parser cannot be joined; leave the run marker so the
        # next start reports it, and end the process before native code runs on at exit.
        log.critical("A service thread did not stop; exiting without cleanup")
        logging.shutdown()
        os._exit(1)
    if session.instance is not None:
        session.instance.release()
    session.crash.clean_exit()
    log.info("Exited cleanly; log at %s", session.log_file)


def _desktop_entry(install: bool) -> int:
    """--install-desktop-entry / --uninstall-desktop-entry: print what changed."""
    from app import desktop_entry

    if not sys.platform.startswith("linux"):
        print("Desktop entries are a Linux feature; the installer adds Tern to the menu elsewhere.", file=sys.stderr)
        return 2
    try:
        changed = desktop_entry.install() if install else desktop_entry.uninstall()
    except OSError as exc:
        print(f"Could not {'add' if install else 'remove'} the desktop entry: {exc}", file=sys.stderr)
        return 1
    verb = "Wrote" if install else "Removed"
    print("\n".join(f"{verb} {path}" for path in changed) or "Nothing to remove.")
    return 0


def run(argv: list[str] | None = None) -> int:
    """Run the app; returns the process exit code."""
    started = time.monotonic()
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.install_desktop_entry or args.uninstall_desktop_entry:
        return _desktop_entry(args.install_desktop_entry)
    if args.self_test:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
        args.no_err_windows = True
    instance = None
    if not args.self_test:  # the self-test never opens the history, so it may run beside a user's Tern
        from app.core.paths import AppPaths
        from app.single_instance import SingleInstance

        data = AppPaths.default().data
        data.mkdir(parents=True, exist_ok=True, mode=0o700)
        instance = SingleInstance(data)
        if not instance.claim():
            return _hand_over(instance, args.files)
    session = start(args, instance)
    probe = None
    if args.self_test:
        from app.self_test import SelfTest

        probe = SelfTest(session.window, started)
        probe.start()
    try:
        code = session.app.exec()
    finally:
        shutdown(session)
    return probe.exit_code if probe is not None else code
