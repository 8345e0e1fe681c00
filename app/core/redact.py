"""Logging a failure without the user's words.

An exception's message can quote what the user wrote (a template's
`raise_exception`, a value in a traceback's error). Logs at info level and
above get the exception's type and where it was raised; its message only at
debug level, which the user turns on for a bug report.
"""

from __future__ import annotations

import logging
import traceback


def failure(exc: BaseException) -> str:
    """The exception's type and its last frames, without its message."""
    frames = traceback.format_list(traceback.extract_tb(exc.__traceback__)[-6:])
    where = "".join(frames).rstrip()
    return f"{type(exc).__name__} (its message is logged at debug level only)" + (f"\n{where}" if where else "")


def log_failure(log: logging.Logger, level: int, what: str, exc: BaseException) -> None:
    """Log `what` failed at `level` without the message; the message, and the traceback, at debug."""
    log.log(level, "%s: %s", what, failure(exc))
    log.debug("%s: %s", what, exc, exc_info=exc)
