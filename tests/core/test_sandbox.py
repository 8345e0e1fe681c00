"""The sandbox child process: results, errors, aborts, hangs and memory, each reported, each survived."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

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


_ORPHAN_PARENT = """
import sys
from app.core.sandbox import Sandbox
from tests.core.test_sandbox import _pid, _hang
box = Sandbox("orphan")
print(box.call(_pid, timeout=60), flush=True)
box.call(_hang, timeout=120)  # killed while the child works
"""


def test_a_child_does_not_outlive_a_killed_app() -> None:
    parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    time.sleep(0.5)
    parent.kill()  # as a crash or kill -9 ends the app
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.1)
    assert not _alive(child), "the sandbox child lingered after its parent died"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except FileNotFoundError:
        return False
    return state != "Z"
