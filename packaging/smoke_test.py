"""The frozen smoke test: run a built Tern bundle as a user's machine would, and check it.

    python packaging/smoke_test.py build/dist/Tern [DAMAGED.gguf]

Every run of the frozen `Tern` starts from a clean environment (`env -i`: a
temporary HOME, no venv, no Python on PATH), with only the session D-Bus passed
through, where the caller has started a real Secret Service (gnome-keyring).
Each run is traced with strace, and any attempt to reach the network fails
the test. It checks, in order:

1. a second launch hands its file to the running Tern and exits;
2. a Tern killed with SIGKILL is noticed at the next start;
3. the self-test: a chat with the starter model, an encrypted history written
   and read back with its key in the keychain, a PDF read in a child process,
   TLS trust, the CPU variant loaded from inside the bundle, and a clean exit;
4. with a damaged model (`packaging/damaged_model.py`, which makes llama.cpp
   abort), the frozen app's first load in a child process refuses it with a
   message, and the app itself exits cleanly.

Prints one JSON object; exits non-zero on any failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TIMEOUT_S = 300
NETWORK = re.compile(r"connect\(\d+, \{sa_family=AF_INET6?,")


class SmokeError(AssertionError):
    """A check failed."""


def clean_env(home: Path) -> dict[str, str]:
    """What a desktop session gives a program, minus everything from the build machine."""
    env = {
        "HOME": str(home),
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "QT_QPA_PLATFORM": "offscreen",
    }
    if "DBUS_SESSION_BUS_ADDRESS" in os.environ:  # the Secret Service
        env["DBUS_SESSION_BUS_ADDRESS"] = os.environ["DBUS_SESSION_BUS_ADDRESS"]
    return env


class Runner:
    """Starts the frozen executable under strace in a clean environment."""

    def __init__(self, bundle: Path, scratch: Path) -> None:
        self.executable = bundle / "Tern"
        self.home = scratch / "home"
        self.home.mkdir()
        self.scratch = scratch
        self._traces: list[Path] = []
        self.strace = shutil.which("strace")
        if self.strace is None:
            raise SmokeError("strace is needed to watch for network access")

    def command(self, *args: str) -> list[str]:
        trace = self.scratch / f"strace-{len(self._traces)}.log"
        self._traces.append(trace)
        # --seccomp-bpf: stop only at connect(), so the run keeps its normal speed
        prefix = [self.strace, "-f", "--seccomp-bpf", "-qq", "-e", "trace=connect", "-o", str(trace)]
        return [
            "env",
            "-i",
            *(f"{k}={v}" for k, v in clean_env(self.home).items()),
            *prefix,
            str(self.executable),
            *args,
        ]

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        output = (self.scratch / f"output-{len(self._traces)}.log").open("wb")  # a pipe nobody reads could fill
        return subprocess.Popen(self.command(*args), stdout=output, stderr=subprocess.STDOUT)

    def run(self, *args: str, timeout: float = TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=timeout)

    @property
    def log(self) -> Path:
        return self.home / ".local" / "state" / "tern" / "log" / "tern.log"

    def wait_for_log(self, text: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.log.exists() and text in self.log.read_text(errors="replace"):
                return
            time.sleep(0.2)
        raise SmokeError(f"'{text}' never appeared in {self.log}")

    def network_attempts(self) -> list[str]:
        return [
            line.strip()
            for t in self._traces
            if t.exists()
            for line in t.read_text().splitlines()
            if NETWORK.search(line)
        ]


def check_second_launch(runner: Runner) -> dict[str, object]:
    """A second Tern hands its file over and exits; the first one receives it."""
    first = runner.start()
    try:
        runner.wait_for_log("Listening for later launches")
        note = runner.scratch / "notes.md"
        note.write_text("# Notes\n\nThe ferry leaves at noon.\n")
        started = time.monotonic()
        second = runner.run(str(note), timeout=60)
        took = time.monotonic() - started
        if second.returncode != 0:
            raise SmokeError(f"the second launch failed ({second.returncode}): {second.stderr[-2000:]}")
        runner.wait_for_log("A later launch handed over 1 file(s)", timeout=30)
        runner.wait_for_log("Loaded gemma-3-270m", timeout=180)
    finally:
        # Kill Tern itself (not strace above it): also the crash the next check must notice.
        marker = runner.log.parent / "running.pid"
        if marker.exists():
            os.kill(int(marker.read_text()), signal.SIGKILL)
        else:
            first.kill()
        first.communicate(timeout=30)
    return {"ok": True, "second_launch_s": round(took, 2)}


def check_self_test(runner: Runner, bundle: Path) -> dict[str, object]:
    """The self-test passes, notices the killed run, loads its CPU code from the bundle and exits cleanly."""
    result = runner.run("--self-test")
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SmokeError(f"no report (exit {result.returncode}): {result.stderr[-3000:]}")
    report = json.loads(lines[-1])
    problems = []
    if result.returncode != 0 or not report.get("ok"):
        problems.append(f"self-test failed ({result.returncode}): {report.get('error')}")
    if not report.get("frozen"):
        problems.append("the self-test did not run frozen")
    library = report.get("cpu_backend_library") or ""
    if not str(Path(library).resolve()).startswith(str(bundle.resolve())):
        problems.append(f"the CPU backend came from {library!r}, not from the bundle")
    history = report.get("history") or {}
    if "SecretService" not in str(history.get("keychain")):
        problems.append(f"the key did not go to the Secret Service: {history}")
    text = runner.log.read_text(errors="replace")
    if "The previous run did not exit cleanly" not in text:
        problems.append("the killed run was not noticed")
    if "Exited cleanly" not in text.rsplit("starting; data in", 1)[-1]:
        problems.append("the self-test did not exit cleanly")
    if (runner.log.parent / "running.pid").exists():
        problems.append("the run marker was left behind")
    if problems:
        raise SmokeError("; ".join(problems))
    return report


def check_damaged_model(runner: Runner, damaged: Path) -> dict[str, object]:
    """A model file that aborts llama.cpp is refused by the child's first load; the app lives on and exits cleanly."""
    result = runner.run("--self-test", "--model", str(damaged))
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SmokeError(f"no report for the damaged model (exit {result.returncode}): {result.stderr[-3000:]}")
    report = json.loads(lines[-1])
    error = str(report.get("error"))
    if report.get("ok") or "damaged or not supported" not in error or "aborted" not in error:
        raise SmokeError(f"the damaged model was not refused as it should be: {report}")
    if result.returncode != 1:  # a failed self-test, not a crash
        raise SmokeError(f"the app ended with {result.returncode} on the damaged model")
    if "Exited cleanly" not in runner.log.read_text(errors="replace").rsplit("starting; data in", 1)[-1]:
        raise SmokeError("the app did not exit cleanly after refusing the damaged model")
    return {"refused": error}


def main() -> int:
    """Run every check against the bundle named on the command line."""
    bundle = Path(sys.argv[1]).resolve()
    summary: dict[str, object] = {"bundle": str(bundle)}
    with tempfile.TemporaryDirectory(prefix="tern-smoke-") as scratch:
        runner = Runner(bundle, Path(scratch))
        try:
            summary["second_launch"] = check_second_launch(runner)
            summary["self_test"] = check_self_test(runner, bundle)
            if len(sys.argv) > 2:
                summary["damaged_model"] = check_damaged_model(runner, Path(sys.argv[2]).resolve())
            attempts = runner.network_attempts()
            if attempts:
                raise SmokeError(f"network attempts: {attempts[:5]}")
            summary["network_attempts"] = 0
            summary["ok"] = True
        except (SmokeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            summary["ok"] = False
            summary["error"] = str(exc)
            if runner.log.exists():
                summary["log_tail"] = runner.log.read_text(errors="replace")[-4000:]
    print(json.dumps(summary, indent=2))
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
