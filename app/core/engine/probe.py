"""A model file's first load happens in a child process, where a crash cannot reach the app.

llama.cpp trusts a GGUF's hyper-parameters: when they disagree with its
tensors it can abort the process (`GGML_ASSERT`), hang, or exhaust memory. A
model file is the user's download or drop, as untrusted as a PDF, so before
Tern's own engine opens a file it has not seen, a `Sandbox` child loads it the
same way (a small context, PLE read lazily) and runs one token through it. A
child that aborts, hangs past its time limit or dies of memory gives the user
a plain "damaged or not supported" message instead of taking the window down.

An image projector (mmproj) is vetted the same way, once per model it is paired
with: its header is checked here first (projector_info.py), then the child
loads it in libmtmd beside the model's vocabulary and encodes a small image
(projector_probe.py).

The verdict is kept in a small JSON file, keyed by the file's size, modification
time and the hash of its first MiB, and by the llama.cpp build: opening a known
file again costs nothing. A timeout is not kept (the disk may just have been busy).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.core.engine.gguf_info import GgufError, read_metadata
from app.core.engine.options import EngineError, default_threads
from app.core.engine.projector_info import read_projector_info
from app.core.engine.projector_probe import probe_projector
from app.core.sandbox import Sandbox, SandboxError

log = logging.getLogger("tern.engine")

PROBE_VERSION = 2  # bump when the probe checks more, so older verdicts are redone
PROBE_CONTEXT = 256
PROBE_REPACKS = False  # weights stay in the mapped file: the child's memory is the page cache's to take back
BASE_TIMEOUT_S = 60.0
TIMEOUT_S_PER_GB = 20.0  # reading a cold file at 50 MB/s
PROJECTOR_TIMEOUT_S_PER_GB = 60.0  # read in full, warmed up and run once, on the CPU
_HASHED_BYTES = 1 << 20
PROBE_TEXT = "Hello, world! 0123 ✓ éß Ω 漢字 🙂\n<start_of_turn>user\nHi<end_of_turn>\n"


class ModelRejectedError(EngineError):
    """The file failed its first load in the child process; the message is for the user."""


@dataclass(frozen=True)
class Verdict:
    """How a file's probe load went."""

    ok: bool
    reason: str = ""  # for the user, when not ok


def identity(path: Path) -> str:
    """The file's size, modification time and first MiB's hash, and the llama.cpp build."""
    import llama_cpp  # its version: a new build may treat the same file differently

    st = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(_HASHED_BYTES))
    return f"{st.st_size}:{st.st_mtime_ns}:{digest.hexdigest()}:{llama_cpp.__version__}:{PROBE_VERSION}"


class ModelChecks:
    """Vets model files once each; thread-safe."""

    def __init__(self, cache_file: Path | None, keep_child: bool = False) -> None:
        self._cache_file = cache_file
        self._keep_child = keep_child  # a test corpus keeps one child for many files; the app frees it
        self._sandbox = Sandbox("model-check")
        self._lock = threading.Lock()
        self._verdicts: dict[str, dict[str, Any]] | None = None  # read on first use, by the thread that vets

    def vet(self, path: Path, lazy_ple: bool, embedding: bool = False) -> None:
        """Raise ModelRejectedError unless `path` has loaded (now or before) in a child process."""
        key = identity(path)
        verdict = self._known(key)
        if verdict is None:
            timeout = BASE_TIMEOUT_S + TIMEOUT_S_PER_GB * path.stat().st_size / 1e9
            verdict = self._probe(key, path.name, timeout, probe_load, str(path), lazy_ple, embedding)
        if not verdict.ok:
            raise ModelRejectedError(f"{path.name} is damaged or not supported: {verdict.reason}.")

    def vet_projector(self, model_path: Path, projector_path: Path) -> None:
        """Raise ModelRejectedError unless the image projector has served `model_path` (now or before) in a child.

        Its header is checked first, and its pairing with the model, so a file that would take
        libmtmd down is named and refused without starting a child at all.
        """
        try:
            info = read_projector_info(projector_path)
            meta = read_metadata(model_path)
            arch = str(meta.get("general.architecture", ""))
            width = meta.get(f"{arch}.embedding_length")
            info.check_pairing(width if isinstance(width, int) else 0, arch)
        except GgufError as exc:  # ProjectorError included
            raise ModelRejectedError(str(exc)) from exc
        key = f"projector:{identity(model_path)}|{identity(projector_path)}"
        verdict = self._known(key)
        if verdict is None:
            timeout = BASE_TIMEOUT_S + PROJECTOR_TIMEOUT_S_PER_GB * info.n_bytes / 1e9
            args = (str(model_path), str(projector_path), default_threads(), info.n_embd_text)
            verdict = self._probe(key, projector_path.name, timeout, probe_projector, *args)
        if not verdict.ok:
            raise ModelRejectedError(
                f"The image projector {projector_path.name} is damaged or does not work with {model_path.name}: "
                f"{verdict.reason}."
            )

    @property
    def restarts(self) -> int:
        """Children replaced after dying or hanging."""
        return self._sandbox.restarts

    def close(self) -> None:
        """Stop the child process, if one is running."""
        self._sandbox.close()

    def _known(self, key: str) -> Verdict | None:
        with self._lock:
            if self._verdicts is None:
                self._verdicts = self._read_cache()
            known = self._verdicts.get(key)
        return None if known is None else Verdict(bool(known["ok"]), str(known.get("reason", "")))

    def _probe(self, key: str, name: str, timeout: float, fn: Callable[..., str | None], *args: Any) -> Verdict:
        keep = True
        try:
            problem = self._sandbox.call(fn, *args, timeout=timeout)
        except SandboxError as exc:
            problem = _reason(exc)
            keep = exc.kind != "timeout"
        finally:
            if not self._keep_child:
                self._sandbox.close()  # the child holds the model's mappings until it goes
        verdict = Verdict(problem is None, problem or "")
        log.info("First load of %s in a child process: %s", name, "ok" if verdict.ok else verdict.reason)
        if keep:
            self._remember(key, verdict)
        return verdict

    def _read_cache(self) -> dict[str, dict[str, Any]]:
        if self._cache_file is None:
            return {}
        try:
            data = json.loads(self._cache_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _remember(self, key: str, verdict: Verdict) -> None:
        with self._lock:
            self._verdicts = self._verdicts if self._verdicts is not None else {}
            self._verdicts[key] = {"ok": verdict.ok, "reason": verdict.reason}
            if self._cache_file is None:
                return
            self._verdicts = {**self._read_cache(), **self._verdicts}  # another checker may have written since
            try:
                self._cache_file.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self._cache_file.parent, prefix=self._cache_file.name, suffix=".tmp")
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(self._verdicts, f)
                os.replace(tmp, self._cache_file)
            except OSError as exc:  # a verdict not kept only means probing again next time
                log.warning("Could not keep model check results in %s: %s", self._cache_file, exc)


def _reason(exc: SandboxError) -> str:
    if exc.kind == "timeout":
        return f"loading it did not finish ({exc.detail})"
    if exc.kind == "memory":
        return "loading it needed more memory than this computer has"
    if exc.kind == "crashed":
        return f"llama.cpp could not load it ({exc.detail})"
    return f"loading it failed ({exc.detail})"


def _load_error(lines: list[str]) -> str:
    """llama.cpp's own words for why a load failed (its log says it in several ways, at several depths)."""
    for line in lines:
        if "error loading model:" in line:
            reason = line.rsplit("error loading model:", 1)[1].strip()
            if "failed to load model from" not in reason:
                return reason[:300]
    errors = [ln.strip() for ln in lines if "error" in ln.lower() or "failed" in ln.lower()]
    return errors[0][:300] if errors else "no reason given"


def probe_load(path: str, lazy_ple: bool, embedding: bool) -> str | None:
    """In the child: load `path` with a small context and decode one token; None if it worked, else why not."""
    os.environ["GGML_NO_BACKTRACE"] = "1"  # on an abort, ggml would otherwise attach gdb to print one
    import llama_cpp

    from app.core.engine import backends, llama_log
    from app.core.engine.model_params import LAZY_ON, extra_model_params

    backends.ensure_loaded()
    llama_log.install()
    try:
        lazy = LAZY_ON if lazy_ple else None
        with llama_log.capture() as lines, extra_model_params(lazy_mode=lazy, repack=PROBE_REPACKS):
            llm = llama_cpp.Llama(
                model_path=path,
                n_ctx=PROBE_CONTEXT,
                n_batch=PROBE_CONTEXT,
                n_threads=1,
                embedding=embedding,
                swa_full=True,
                verbose=False,
            )
    except (ValueError, RuntimeError, OSError):
        return f"llama.cpp refused it: {_load_error(lines)}"
    try:
        # Every chat tokenizes whatever the user types: a vocabulary that cannot (no byte
        # fallback, say) aborts in the tokenizer. Then the compute graph is built and run,
        # where more of llama.cpp's asserts live.
        tokens = llm.tokenize(PROBE_TEXT.encode(), add_bos=True, special=True)
        llm.detokenize(tokens)
        llm.eval(tokens[:8])
    except (ValueError, RuntimeError) as exc:
        return f"running it failed ({exc})"
    finally:
        llm.close()
    return None
