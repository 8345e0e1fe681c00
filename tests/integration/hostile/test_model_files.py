"""Hostile model files: refused by the validator, or isolated in the first-load child, never fatal.

The fuzz corpus (`fuzz_models.py`) runs 2,000 mutants of two small real
Gemma models through `LlamaEngine.load`, in a process of its own: a crash of
that process, a hang past its time limit, or an unexpected traceback fails it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
from gguf import GGUFValueType

from app.core.docs.embedder import EmbedderSlot
from app.core.engine import probe
from app.core.engine.generation import SamplingParams
from app.core.engine.gguf_info import GgufError, read_gguf_info
from app.core.engine.llama_engine import LlamaEngine
from app.core.engine.options import LoadOptions
from app.core.engine.probe import ModelChecks, ModelRejectedError
from tests.integration.hostile.fuzz_models import MICRO_GEMMA4
from tests.integration.hostile.gguf_mutations import Kv, _with_kv, parse, serialize
from tools.synthetic_gemma import write_gemma

ROOT = Path(__file__).resolve().parents[3]
FUZZ_MUTANTS = 2000
FUZZ_SEED = 20261201


@pytest.fixture(scope="module")
def micro(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Path:
    return write_gemma(tmp_path_factory.mktemp("micro") / "micro.gguf", MICRO_GEMMA4, starter_model)


@pytest.fixture(scope="module")
def aborting(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> Path:
    # Passes every check a header allows, then llama.cpp aborts while it sets up the KV cache:
    # a shared full-attention layer with no earlier full-attention layer to share with.
    shape = replace(MICRO_GEMMA4, name="aborts", n_layer=5, shared_kv_layers=2)
    return write_gemma(tmp_path_factory.mktemp("aborts") / "aborts.gguf", shape, starter_model)


def test_an_aborting_file_is_refused_and_the_loaded_model_stays(micro: Path, aborting: Path, tmp_path: Path) -> None:
    read_gguf_info(aborting)  # the header is fine: only loading it shows the problem
    engine = LlamaEngine(ModelChecks(tmp_path / "model-checks.json"))
    try:
        engine.load(micro, LoadOptions(n_ctx=256))
        with pytest.raises(ModelRejectedError, match=r"aborts.gguf is damaged or not supported: .*aborted"):
            engine.load(aborting, LoadOptions(n_ctx=256))
        assert engine.loaded is not None and engine.loaded.info.path == micro  # never replaced
        tokens = engine.tokenize("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
        stats = engine.generate(tokens, SamplingParams(max_tokens=2), threading.Event(), lambda _t: None)
        assert stats.completion_tokens >= 1  # and it still answers
        started = time.monotonic()
        with pytest.raises(ModelRejectedError):  # the verdict is remembered: no second child
            LlamaEngine(ModelChecks(tmp_path / "model-checks.json")).load(aborting, LoadOptions(n_ctx=256))
        assert time.monotonic() - started < 1
    finally:
        engine.unload()


def test_a_first_load_that_runs_too_long_is_cut_off_and_not_remembered(micro: Path, tmp_path: Path) -> None:
    checks = ModelChecks(tmp_path / "model-checks.json")
    original = probe.BASE_TIMEOUT_S, probe.TIMEOUT_S_PER_GB
    probe.BASE_TIMEOUT_S, probe.TIMEOUT_S_PER_GB = 0.05, 0.0  # too short for any load: it "hangs"
    try:
        with pytest.raises(ModelRejectedError, match="did not finish"):
            checks.vet(micro, lazy_ple=True)
    finally:
        probe.BASE_TIMEOUT_S, probe.TIMEOUT_S_PER_GB = original
    checks.vet(micro, lazy_ple=True)  # a slow disk once is not a verdict
    assert json.loads((tmp_path / "model-checks.json").read_text()) != {}


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("gemma4.block_count", 0, "claims 0 layers"),
        ("gemma4.block_count", 513, "claims 513 layers"),
        ("gemma4.block_count", 1000, "claims 1000 layers"),
        ("gemma4.feed_forward_length", [128] * 9, "lists 9 layers, but the model has 10"),
        ("gemma4.attention.head_count", 3, "64 outputs, which 3 heads cannot share"),
        ("gemma4.embedding_length", 96, "token embeddings are 64 wide, but the model is 96"),
        ("gemma4.rope.dimension_count", 2**40, "far beyond any model"),
        ("gemma4.context_length", 2**31, "context"),
    ],
)
def test_the_validator_refuses_what_llama_cpp_would_abort_on(
    micro: Path, tmp_path: Path, key: str, value: object, reason: str
) -> None:
    gguf = parse(micro)
    old = next(k for k in gguf.kvs if k.key == key)
    wide = isinstance(value, int) and value >= 2**32
    new = Kv(key, GGUFValueType.UINT64 if wide else old.vtype, value, old.etype)
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(serialize(_with_kv(gguf, key, new)))
    with pytest.raises(GgufError, match=reason):
        read_gguf_info(bad)


def test_an_embedding_model_that_aborts_is_refused_with_a_message(aborting: Path, tmp_path: Path) -> None:
    slot = EmbedderSlot(ModelChecks(tmp_path / "model-checks.json"))
    slot.set_path(aborting)
    assert slot.get() is None  # this process lives on
    assert "aborts.gguf is damaged or not supported" in slot.error
    assert slot.embed_chunks(["a question"]) is None  # later calls answer quietly, without another try


@pytest.mark.slow
def test_a_fuzz_corpus_never_takes_the_app_down(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "tests.integration.hostile.fuzz_models",
        str(FUZZ_MUTANTS),
        str(FUZZ_SEED),
        str(tmp_path),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert result.returncode == 0, f"the loading process died ({result.returncode}): {result.stderr[-3000:]}"
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["unexpected"] == 0, "\n\n".join(report["unexpected_tracebacks"])
    outcomes = ("refused", "isolated", "refused_by_llama", "loaded")
    assert sum(report[k] for k in outcomes) == FUZZ_MUTANTS
    assert report["isolated"] > 0 and report["loaded"] > 0  # the corpus reaches llama.cpp, and some mutants crash it
