"""`Ref`: the id of a message or conversation that a queued store request fills in.

A `Ref` is created wherever a save is asked for and handed to the history's
thread, which is the only thread that reads or writes `value`; other threads
compare refs by identity and learn ids from the signals that report saves.
That lets a turn queue "save the question, then the answer under it" without
waiting for the first id.
"""

from __future__ import annotations


class Ref:
    """An id that a queued store request fills in (read and written on the history's thread only)."""

    __slots__ = ("value",)

    def __init__(self, value: int | None = None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Ref({self.value})"
