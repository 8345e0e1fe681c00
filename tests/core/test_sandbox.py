"""The sandbox child process: results, errors, aborts, hangs and memory, each reported, each survived."""

from __future__ import annotations

import os
import sys
import time

import pytest

from app.core.sandbox import Sandbox, SandboxError


def _add(a: int, b: int) -> int:
    return a + b


def _fail() -> None:
    raise KeyError("no such thing")


def _abort() -> None:
    os.abort()  # what llama.cpp's GGML_ASSERT does


def _hang() -> None:
    time.sleep(60)


def _allocate() -> int:
    return len(bytearray(3 * 1024**3))


def _pid() -> int:
    return os.getpid()


@pytest.fixture
def sandbox() -> Sandbox:
    box = Sandbox("test", memory_limit=1024**3)
    yield box  # type: ignore[misc]
    box.close()


def test_calls_run_in_one_long_lived_child(sandbox: Sandbox) -> None:
    assert sandbox.call(_add, 2, 3, timeout=30) == 5
    child = sandbox.call(_pid, timeout=10)
    assert child != os.getpid() and sandbox.call(_pid, timeout=10) == child  # kept, not restarted per call


def test_an_exception_there_is_reported_with_its_type(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError) as caught:
        sandbox.call(_fail, timeout=30)
    assert caught.value.kind == "error" and caught.value.detail.startswith("KeyError")
    assert sandbox.call(_add, 1, 1, timeout=10) == 2 and sandbox.restarts == 0


def test_an_abort_is_survived_and_the_next_call_gets_a_fresh_child(sandbox: Sandbox) -> None:
    first = sandbox.call(_pid, timeout=30)
    with pytest.raises(SandboxError) as caught:
        sandbox.call(_abort, timeout=10)
    assert caught.value.kind == "crashed" and "aborted" in caught.value.detail
    assert sandbox.call(_pid, timeout=30) != first and sandbox.restarts == 1


def test_a_hang_is_cut_off_at_its_time_limit(sandbox: Sandbox) -> None:
    sandbox.call(_pid, timeout=30)  # started
    started = time.monotonic()
    with pytest.raises(SandboxError) as caught:
        sandbox.call(_hang, timeout=1)
    assert caught.value.kind == "timeout" and time.monotonic() - started < 10
    assert sandbox.call(_add, 2, 2, timeout=30) == 4


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the memory cap is Linux's RLIMIT_AS")
def test_a_runaway_allocation_hits_the_memory_cap(sandbox: Sandbox) -> None:
    with pytest.raises(SandboxError) as caught:
        sandbox.call(_allocate, timeout=30)
    assert caught.value.kind == "memory"
