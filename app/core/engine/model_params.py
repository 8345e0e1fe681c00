"""Fields of `llama_model_params` that `llama_cpp.Llama()` does not expose.

`Llama.__init__` starts from `llama_cpp.llama_model_default_params()` and sets
only the fields it knows. While a model loads, that function is swapped for
one that also fills in ours (a load-progress callback today; lazy PLE and
tensor placement build on the same hook). Loads are serialised by a lock, so
the swap never leaks into another load.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator
from typing import Any

import llama_cpp.llama_cpp as llama_lib

_swap_lock = threading.Lock()


@contextlib.contextmanager
def extra_model_params(progress: Callable[[float], bool] | None = None) -> Iterator[list[Any]]:
    """Within the block, `Llama()` gets our extra model params.

    `progress(fraction)` is called on the loading thread; returning False aborts
    the load. The yielded list holds ctypes objects that must outlive the load.
    """
    keep_alive: list[Any] = []
    original = llama_lib.llama_model_default_params

    def patched() -> Any:
        params = original()
        if progress is not None:
            # Return an int: a ctypes c_bool callback returning Python's True/False
            # drops a reference to the singleton on every call and crashes at exit.
            callback = llama_lib.llama_progress_callback(lambda fraction, _user: 1 if progress(float(fraction)) else 0)
            keep_alive.append(callback)
            params.progress_callback = callback
            params.progress_callback_user_data = ctypes.c_void_p(0)
        return params

    with _swap_lock:
        llama_lib.llama_model_default_params = patched
        try:
            yield keep_alive
        finally:
            llama_lib.llama_model_default_params = original
