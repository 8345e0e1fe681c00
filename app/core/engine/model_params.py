"""Fields of `llama_model_params` that `llama_cpp.Llama()` does not expose, and a template it must not compile.

`Llama.__init__` starts from `llama_cpp.llama_model_default_params()` and sets
only the fields it knows. While a model loads, that function is swapped for
one that also fills in ours: a load-progress callback, `lazy_mode` (read the
PLE table's rows on demand) and `tensor_buft_overrides` (pin tensors to a
buffer type). Loads are serialised by a lock, so the swap never leaks into
another load.

`Llama()` can only switch flash attention on or off; llama.cpp's own default is
"auto" (on wherever the device that holds the layers runs it). With
`flash_attn_auto`, the context is created with that default.

`Llama.__init__` also compiles every chat template in the file's metadata,
in this process, where a hostile one can hang it. Tern renders templates
itself, in a sandbox (`app.core.chat.templates`), so during a load
llama-cpp-python's template formatter is swapped for one that compiles nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import llama_cpp.llama_chat_format as llama_chat_format
import llama_cpp.llama_cpp as llama_lib

from app.core.engine.backends import cpu_buffer_type

LAZY_OFF = 0  # llama.h: enum llama_lazy_mode (AUTO = 1 applies only to tensors over 4 GiB)
LAZY_ON = 2
FLASH_ATTN_AUTO = -1  # llama.h: enum llama_flash_attn_type

_swap_lock = threading.Lock()


class _BuftOverride(ctypes.Structure):
    """`struct llama_model_tensor_buft_override` (include/llama.h)."""

    _fields_ = [("pattern", ctypes.c_char_p), ("buft", ctypes.c_void_p)]


class _TemplateNotCompiled:
    """Stands in for llama-cpp-python's `Jinja2ChatFormatter` while a model loads."""

    def __init__(self, *_args: Any, **_kwargs: Any) -> None:
        pass

    def to_chat_handler(self) -> Callable[..., Any]:
        """A handler that is never used: Tern builds its own prompts."""

        def unused(*_args: Any, **_kwargs: Any) -> Any:
            raise RuntimeError("Tern renders chat templates itself")

        return unused


@contextlib.contextmanager
def _templates_not_compiled() -> Iterator[None]:
    original = llama_chat_format.Jinja2ChatFormatter
    llama_chat_format.Jinja2ChatFormatter = _TemplateNotCompiled  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        llama_chat_format.Jinja2ChatFormatter = original  # type: ignore[misc]


@contextlib.contextmanager
def untrusted_load() -> Iterator[None]:
    """Around any `Llama()`: the file's chat templates are not compiled here (for loads without our params)."""
    with _swap_lock, _templates_not_compiled():
        yield


@contextlib.contextmanager
def extra_model_params(
    progress: Callable[[float], bool] | None = None,
    lazy_mode: int | None = None,
    cpu_tensors: Sequence[str] = (),
    repack: bool = True,
    flash_attn_auto: bool = False,
) -> Iterator[list[Any]]:
    """Within the block, `Llama()` gets our extra model params.

    `progress(fraction)` is called on the loading thread; returning False aborts
    the load. `cpu_tensors` are regex patterns of tensors pinned to the CPU
    buffer type. `repack=False` leaves the weights in the mapped file instead of
    copying them into CPU-friendly layouts. `flash_attn_auto` creates the
    context with llama.cpp's "auto" flash attention. The yielded list holds
    ctypes objects that must outlive the model.
    """
    keep_alive: list[Any] = []
    original = llama_lib.llama_model_default_params
    original_init = llama_lib.llama_init_from_model

    def init_from_model(model: Any, params: Any, /) -> Any:
        if flash_attn_auto:
            params.flash_attn_type = FLASH_ATTN_AUTO
        return original_init(model, params)

    def patched() -> Any:
        params = original()
        if lazy_mode is not None:
            params.lazy_mode = lazy_mode
        if not repack:
            params.use_extra_bufts = False
        if cpu_tensors:
            overrides = (_BuftOverride * (len(cpu_tensors) + 1))()  # NULL-terminated
            for i, pattern in enumerate(cpu_tensors):
                overrides[i].pattern = pattern.encode()
                overrides[i].buft = cpu_buffer_type()
            keep_alive.append(overrides)
            params.tensor_buft_overrides = ctypes.cast(overrides, ctypes.c_void_p)
        if progress is not None:
            # Return an int: a ctypes c_bool callback returning Python's True/False
            # drops a reference to the singleton on every call and crashes at exit.
            callback = llama_lib.llama_progress_callback(lambda fraction, _user: 1 if progress(float(fraction)) else 0)
            keep_alive.append(callback)
            params.progress_callback = callback
            params.progress_callback_user_data = ctypes.c_void_p(0)
        return params

    with _swap_lock, _templates_not_compiled():
        llama_lib.llama_model_default_params = patched
        llama_lib.llama_init_from_model = init_from_model
        try:
            yield keep_alive
        finally:
            llama_lib.llama_model_default_params = original
            llama_lib.llama_init_from_model = original_init
