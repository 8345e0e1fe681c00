"""Route llama.cpp's own log lines into Python logging.

llama.cpp writes from C, in pieces, from whichever thread is working. The
callback joins pieces into lines and logs them under `tern.llama`, and keeps
the most recent lines so a failed load can say what llama.cpp said.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import re
import threading
from collections.abc import Iterator

import llama_cpp.llama_cpp as llama_lib

log = logging.getLogger("tern.llama")
# ggml.h: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5 (continues the previous line).
# llama.cpp's INFO is load detail and its WARN mostly advice, so both land a step lower.
_LEVELS = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.ERROR}
_GGML_LOG_CONT = 5

_lock = threading.Lock()
_partial: list[str] = []
_partial_level = logging.DEBUG
recent_lines: collections.deque[str] = collections.deque(maxlen=400)
_captures: list[list[str]] = []
# "load_tensors:   CPU_Mapped model buffer size =   241.00 MiB", "CPU KV buffer size", "CPU compute buffer size"
_BUFFER = re.compile(r"(\S+) (model|KV|compute|output) buffer size\s*=\s*([\d.]+) MiB")


def _log_piece(level: int, text: bytes, _user: ctypes.c_void_p) -> None:
    global _partial_level
    piece = text.decode("utf-8", errors="replace")
    with _lock:
        if level != _GGML_LOG_CONT:
            _partial_level = _LEVELS.get(level, logging.DEBUG)
        _partial.append(piece)
        if not piece.endswith("\n"):
            return
        line = "".join(_partial).rstrip("\n")
        _partial.clear()
        recent_lines.append(line)
        for capture in _captures:
            capture.append(line)
        log.log(_partial_level, "%s", line)


_on_log = llama_lib.llama_log_callback(_log_piece)  # module-level: must outlive every log call


def install() -> None:
    """Take over llama.cpp's log output (idempotent)."""
    llama_lib.llama_log_set(_on_log, ctypes.c_void_p(0))


def install_mtmd() -> None:
    """Take over libmtmd's log output too (it loads only when an image projector does)."""
    import llama_cpp.mtmd_cpp as mtmd

    mtmd.mtmd_log_set(_on_log, ctypes.c_void_p(0))
    mtmd.mtmd_helper_log_set(_on_log, ctypes.c_void_p(0))


def last_error_lines(n: int = 5) -> list[str]:
    """The latest lines that look like errors, newest last."""
    with _lock:
        hits = [ln for ln in recent_lines if "error" in ln.lower() or "failed" in ln.lower()]
    return hits[-n:]


@contextlib.contextmanager
def capture() -> Iterator[list[str]]:
    """Collect every line llama.cpp logs inside the block (e.g. during a load)."""
    lines: list[str] = []
    with _lock:
        _captures.append(lines)
    try:
        yield lines
    finally:
        with _lock:
            _captures.remove(lines)


def buffer_sizes(lines: list[str]) -> list[tuple[str, float]]:
    """("CPU_Mapped model", MiB) for each buffer llama.cpp reported, in order."""
    return [(f"{m.group(1)} {m.group(2)}", float(m.group(3))) for line in lines if (m := _BUFFER.search(line))]
