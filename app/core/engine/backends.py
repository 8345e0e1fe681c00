"""Which build of llama.cpp's CPU code runs here, loaded from where Tern put it.

A native build (the developer's venv) is compiled for the machine it was built
on and has its CPU backend linked in. The portable build in Tern's bundle
(`GGML_BACKEND_DL` + `GGML_CPU_ALL_VARIANTS`) ships one CPU backend per
instruction-set level, `libggml-cpu-<variant>.so`, next to libllama; ggml
scores each against this CPU and keeps the best, so one bundle runs on any
x86-64 and still uses AVX2 or AVX-512 where they exist.

Left to itself, llama.cpp looks for those libraries in the executable's folder
and the current directory, the second of which is whatever folder the user is
in. So `ensure_loaded()` loads them from the folder llama-cpp-python loaded
llama.cpp from, before any model is loaded.
"""

from __future__ import annotations

import ctypes
import logging
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("tern.engine")

_DEVICE_TYPE_CPU = 0  # enum ggml_backend_dev_type
# ggml-backend-reg.cpp: "load_backend: loaded CPU backend from /…/libggml-cpu-haswell.so"
_LOADED = re.compile(r"loaded CPU backend from (.+)$")
_VARIANT = re.compile(r"ggml-cpu-([\w.]+?)\.(?:so|dll|dylib)$")


class BackendError(RuntimeError):
    """llama.cpp's CPU backend could not be loaded; the message is for the user."""


@dataclass(frozen=True)
class CpuBackend:
    """The CPU backend in use."""

    variant: str  # "haswell", "sapphirerapids", …; "native" when linked into a machine-specific build
    library: str | None  # the variant's file, for a portable build
    features: tuple[str, ...]  # instruction sets and options compiled into it ("AVX2", "OPENMP", …)
    llama_cpp_commit: str  # the llama.cpp commit it was built from ("unknown" when the build did not record it)
    ggml_version: str


class _Ggml:
    """The few ggml calls this needs, declared once."""

    def __init__(self, lib_dir: Path) -> None:
        from llama_cpp._ctypes_extensions import load_shared_library

        lib = load_shared_library("ggml", lib_dir)
        base = load_shared_library("ggml-base", lib_dir)  # Windows finds a symbol only in its own DLL
        self.reg_count = _declare(lib, "ggml_backend_reg_count", ctypes.c_size_t)
        self.load_all_from_path = _declare(lib, "ggml_backend_load_all_from_path", None, ctypes.c_char_p)
        self.dev_by_type = _declare(lib, "ggml_backend_dev_by_type", ctypes.c_void_p, ctypes.c_int)
        self.dev_buffer_type = _declare(base, "ggml_backend_dev_buffer_type", ctypes.c_void_p, ctypes.c_void_p)
        self.dev_backend_reg = _declare(base, "ggml_backend_dev_backend_reg", ctypes.c_void_p, ctypes.c_void_p)
        self.reg_get_proc_address = _declare(
            base, "ggml_backend_reg_get_proc_address", ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p
        )
        self.commit = _declare(base, "ggml_commit", ctypes.c_char_p)
        self.version = _declare(base, "ggml_version", ctypes.c_char_p)


def _declare(lib: ctypes.CDLL, name: str, restype: Any, *argtypes: Any) -> Any:
    fn = getattr(lib, name)
    fn.restype = restype
    fn.argtypes = list(argtypes)
    return fn


class _Feature(ctypes.Structure):
    """`struct ggml_backend_feature` (ggml-backend.h)."""

    _fields_ = [("name", ctypes.c_char_p), ("value", ctypes.c_char_p)]


def library_dir() -> Path:
    """Where llama-cpp-python loaded llama.cpp from (LLAMA_CPP_LIB_PATH overrides its own lib/)."""
    import llama_cpp  # here, not at start-up: importing it costs a quarter of a second

    return Path(os.environ.get("LLAMA_CPP_LIB_PATH") or Path(llama_cpp.__file__).parent / "lib")


_lock = threading.Lock()
_ggml: _Ggml | None = None
_backend: CpuBackend | None = None


def ensure_loaded() -> CpuBackend:
    """Load the CPU backend (once) and say which one it is. Raises BackendError when there is none."""
    global _ggml, _backend
    with _lock:
        if _backend is not None:
            return _backend
        lib_dir = library_dir()
        ggml = _Ggml(lib_dir)
        library = None
        if ggml.reg_count() == 0:  # a portable build: nothing is linked in
            from app.core.engine import llama_log

            llama_log.install()
            with llama_log.capture() as lines:
                ggml.load_all_from_path(os.fsencode(lib_dir))
            library = next((m.group(1) for line in lines if (m := _LOADED.search(line))), None)
        device = ggml.dev_by_type(_DEVICE_TYPE_CPU)
        if not device:
            raise BackendError(f"llama.cpp's CPU code could not be loaded from {lib_dir}; reinstall Tern.")
        variant = "native"
        if library is not None:
            found = _VARIANT.search(Path(library).name)
            variant = found.group(1) if found else Path(library).stem
        _ggml = ggml
        _backend = CpuBackend(
            variant=variant,
            library=library,
            features=_features(ggml, device),
            llama_cpp_commit=(ggml.commit() or b"unknown").decode(),
            ggml_version=(ggml.version() or b"").decode(),
        )
        log.info(
            "llama.cpp CPU backend: %s (%s), features %s, llama.cpp %s",
            variant,
            library or "linked in",
            " ".join(_backend.features) or "none reported",
            _backend.llama_cpp_commit,
        )
        return _backend


def current() -> CpuBackend | None:
    """The CPU backend once `ensure_loaded` has run (for display; never loads anything)."""
    return _backend


def cpu_buffer_type() -> int:
    """The CPU device's buffer type, for pinning tensors to the CPU."""
    ensure_loaded()
    assert _ggml is not None
    buft = _ggml.dev_buffer_type(_ggml.dev_by_type(_DEVICE_TYPE_CPU))
    if not buft:
        raise BackendError("llama.cpp's CPU buffer type is missing")
    return int(buft)


def _features(ggml: _Ggml, device: int) -> tuple[str, ...]:
    reg = ggml.dev_backend_reg(device)
    address = ggml.reg_get_proc_address(reg, b"ggml_backend_get_features") if reg else None
    if not address:
        return ()
    get_features = ctypes.CFUNCTYPE(ctypes.POINTER(_Feature), ctypes.c_void_p)(address)
    features = get_features(reg)
    names = []
    i = 0
    while features and features[i].name:
        value = (features[i].value or b"").decode()
        if value not in ("", "0"):
            names.append(features[i].name.decode())
        i += 1
    return tuple(names)
