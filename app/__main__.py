"""`python -m app`, the `tern` command, and the frozen Tern executable."""

from __future__ import annotations

import multiprocessing
import os
import sys


def _restore_library_path() -> None:
    """Give programs Tern starts (a file manager, a browser) the system's libraries, not the bundle's.

    PyInstaller's launcher points LD_LIBRARY_PATH into the bundle and keeps the
    user's value in LD_LIBRARY_PATH_ORIG. The loader has already read it for this
    process, so changing it here only affects child processes.
    """
    bundle = getattr(sys, "_MEIPASS", None)
    if not bundle or bundle not in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep):
        return
    original = os.environ.pop("LD_LIBRARY_PATH_ORIG", None)
    if original:
        os.environ["LD_LIBRARY_PATH"] = original
    else:
        del os.environ["LD_LIBRARY_PATH"]


def main() -> None:
    """Entry point."""
    _restore_library_path()
    # In a frozen bundle the document reader's child processes start this same
    # executable; this turns such a start into the child instead of a second Tern.
    multiprocessing.freeze_support()
    from app.bootstrap import run

    sys.exit(run())


if __name__ == "__main__":
    main()
