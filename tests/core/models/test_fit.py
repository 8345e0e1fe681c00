"""Memory estimates against what llama.cpp and the kernel report for real loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.core.engine.gguf_info import GgufError, HeaderTruncatedError, read_gguf_header, read_gguf_info
from app.core.engine.llama_engine import LlamaEngine, LoadOptions, Residency
from app.core.models.fit import (
    Machine,
    MemoryEstimate,
    ModelShape,
    Verdict,
    estimate_memory,
    judge,
    recommend,
    repack_types,
)
from tools.synthetic_gemma import GEMMA4_E2B, TINY_GEMMA3N, TINY_GEMMA4, ensure_model, write_gemma

ROOT = Path(__file__).resolve().parents[3]
MIB = 1 << 20
GB = 10**9
# Read at import, before the autouse fixture points HOME at a temporary folder:
# the E2B-shaped model takes minutes and ~10 GB of scratch space to make, so it is kept.
SYNTHETIC_CACHE = Path.home() / ".cache" / "tern" / "synthetic"


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, starter_model: Path) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fit")
    tiny = {s.name: write_gemma(folder / f"{s.name}.gguf", s, starter_model) for s in (TINY_GEMMA4, TINY_GEMMA3N)}
    return {"starter": starter_model, **tiny}


@pytest.mark.parametrize("name", ["tiny-gemma4", "tiny-gemma3n", "starter"])
def test_kv_and_compute_match_the_buffers_llama_cpp_allocates(models: dict[str, Path], name: str) -> None:
    engine = LlamaEngine()
    info = read_gguf_info(models[name])
    for n_ctx in (1024, 4096):
        loaded = engine.load(models[name], LoadOptions(n_ctx=n_ctx))
        try:
            estimate = estimate_memory(info, n_ctx)
            # llama.cpp logs MiB with two decimals.
            assert estimate.kv_cache / MIB == pytest.approx(loaded.buffer_mib("KV"), abs=0.01)
            assert estimate.compute / MIB == pytest.approx(loaded.buffer_mib("compute"), rel=0.05)
        finally:
            engine.unload()


def test_kv_layers_follow_llama_cpps_sharing_rules(models: dict[str, Path]) -> None:
    gemma3n = ModelShape.from_info(read_gguf_info(models["tiny-gemma3n"]))
    gemma4 = ModelShape.from_info(read_gguf_info(models["tiny-gemma4"]))
    starter = ModelShape.from_info(read_gguf_info(models["starter"]))
    assert [layer for layer, _ in gemma3n.kv_layers] == list(range(20))  # of 22: hard-coded in llama.cpp
    assert [layer for layer, _ in gemma4.kv_layers] == list(range(5))  # 10 layers, 5 shared
    assert len(starter.kv_layers) == 18 and starter.has_swa and gemma4.has_swa


def test_ple_on_disk_counts_toward_disk_not_ram(models: dict[str, Path]) -> None:
    info = read_gguf_info(models["tiny-gemma4"])
    all_weights = sum(t.n_bytes for t in info.tensors)
    on_disk = estimate_memory(info, 4096, tokens=100)
    in_ram = estimate_memory(info, 4096, Residency.PLE_IN_RAM, tokens=100)
    assert info.ple_bytes > 0
    assert on_disk.weights_ram == all_weights - info.ple_bytes
    assert on_disk.ple_disk == info.ple_bytes
    assert 0 < on_disk.ple_paged < info.ple_bytes // 10  # 100 tokens touch at most 100 rows
    assert in_ram.weights_ram == all_weights and in_ram.ple_disk == 0 and in_ram.ple_paged == 0
    assert in_ram.total_ram - on_disk.total_ram == info.ple_bytes - on_disk.ple_paged
    assert on_disk.disk == in_ram.disk == info.file_size
    # A model without a PLE has nothing on disk.
    starter = estimate_memory(read_gguf_info(models["starter"]), 4096)
    assert starter.ple_disk == starter.ple_paged == 0


def test_more_context_costs_more_kv_and_the_engine_clamps_to_the_training_length(models: dict[str, Path]) -> None:
    info = read_gguf_info(models["starter"])
    small, large = estimate_memory(info, 2048), estimate_memory(info, 8192)
    assert large.kv_cache == 4 * small.kv_cache
    assert large.total_ram > small.total_ram
    tiny = read_gguf_info(models["tiny-gemma4"])  # trained for 4096 tokens
    assert estimate_memory(tiny, 65536) == estimate_memory(tiny, 4096)


def test_gpu_layers_move_weights_and_kv_to_vram(models: dict[str, Path]) -> None:
    info = read_gguf_info(models["tiny-gemma4"])
    shape = ModelShape.from_info(info)
    cpu = estimate_memory(info, 4096)
    output_only = estimate_memory(info, 4096, n_gpu_layers=1)
    everything = estimate_memory(info, 4096, n_gpu_layers=99)
    assert cpu.vram == 0
    assert output_only.kv_cache == cpu.kv_cache and output_only.vram > 0
    assert everything.kv_cache == 0
    assert everything.weights_ram == cpu.weights_ram - sum(shape.layer_bytes) - shape.output_bytes
    assert everything.vram > sum(shape.layer_bytes) + cpu.kv_cache + cpu.compute


def test_an_estimate_from_the_header_alone_matches_the_file(models: dict[str, Path]) -> None:
    path = models["tiny-gemma4"]
    info = read_gguf_info(path)
    data_start = min(t.offset for t in info.tensors)
    header = path.read_bytes()[:data_start]
    assert estimate_memory(read_gguf_header(header, path.name, info.file_size), 4096) == estimate_memory(info, 4096)
    with pytest.raises(HeaderTruncatedError):
        read_gguf_header(header[: data_start // 2], path.name, info.file_size)
    with pytest.raises(GgufError, match="not a GGUF model"):
        read_gguf_header(b"<html>rate limited</html>" * 10, path.name, info.file_size)
    with pytest.raises(GgufError, match="truncated"):  # the tensors do not fit in the size given
        read_gguf_header(header, path.name, data_start + 100)


def test_repack_types_follow_the_cpu() -> None:
    assert "Q4_K" in repack_types("x86_64", frozenset({"avx2"}))
    assert "Q2_K" in repack_types("x86_64", frozenset({"avx2", "avx512f"}))
    assert repack_types("x86_64", frozenset({"sse4_2"})) == frozenset()
    assert {"Q4_0", "Q8_0"} <= repack_types("arm64")
    assert repack_types("riscv64") == frozenset()


def estimate(ram: float, disk: float = 3.4 * GB, vram: float = 0) -> MemoryEstimate:
    """An estimate whose total RAM is `ram` bytes."""
    return MemoryEstimate(int(ram), 0, 0, 0, 0, 0, 0, int(vram), int(disk))


def machine(available: float, disk_free: float = 100 * GB, vram_free: float = 0) -> Machine:
    return Machine(16 * GB, int(available), int(vram_free), int(vram_free), int(disk_free))


def test_judge_gives_a_verdict_and_the_numbers() -> None:
    verdict, reason = judge(estimate(1.9 * GB), machine(4 * GB))
    assert verdict == Verdict.FITS
    assert reason == "Needs about 1.9 GB of RAM (4.0 GB free) and 3.4 GB of disk (100.0 GB free)."
    assert judge(estimate(3 * GB), machine(4 * GB))[0] == Verdict.FITS  # exactly 75 %
    verdict, reason = judge(estimate(3.5 * GB), machine(4 * GB))
    assert verdict == Verdict.TIGHT and "Close other apps" in reason
    verdict, reason = judge(estimate(5 * GB), machine(4 * GB))
    assert verdict == Verdict.WONT_FIT and reason.startswith("Not enough memory: needs about 5.0 GB")


def test_judge_checks_disk_only_for_a_download() -> None:
    verdict, reason = judge(estimate(1 * GB, disk=3.4 * GB), machine(8 * GB, disk_free=3 * GB))
    assert verdict == Verdict.WONT_FIT and reason.startswith("Not enough disk space")
    verdict, reason = judge(estimate(1 * GB, disk=3.4 * GB), machine(8 * GB, disk_free=3 * GB), download=False)
    assert verdict == Verdict.FITS and "disk" not in reason
    verdict, reason = judge(estimate(1 * GB, disk=3.4 * GB), machine(8 * GB, disk_free=4.4 * GB))
    assert verdict == Verdict.TIGHT and "nearly full" in reason


def test_judge_checks_vram_only_when_layers_are_offloaded() -> None:
    assert judge(estimate(1 * GB), machine(8 * GB, vram_free=0))[0] == Verdict.FITS
    verdict, reason = judge(estimate(1 * GB, vram=6 * GB), machine(8 * GB, vram_free=4 * GB))
    assert verdict == Verdict.WONT_FIT and "6.0 GB of graphics memory (4.0 GB free)" in reason
    assert judge(estimate(1 * GB, vram=3.8 * GB), machine(8 * GB, vram_free=4 * GB))[0] == Verdict.TIGHT


def test_recommend_picks_the_best_option_that_fits() -> None:
    options = [("Q4_K_M", estimate(3 * GB, disk=3 * GB)), ("Q8_0", estimate(5 * GB, disk=5 * GB))]
    options.append(("Q2_K", estimate(2 * GB, disk=2 * GB)))
    assert recommend(options, machine(4.5 * GB)) == "Q4_K_M"  # Q8_0 won't fit; the largest that does
    assert recommend(options, machine(3.5 * GB)) == "Q2_K"  # Q4_K_M is only TIGHT
    assert recommend(options, machine(1 * GB)) is None
    assert recommend(options, machine(100 * GB), best_first=True) == "Q4_K_M"  # the caller's order


def test_machine_detect_reads_this_computer(tmp_path: Path) -> None:
    found = Machine.detect(tmp_path / "not" / "made" / "yet")
    assert 0 < found.available_ram <= found.total_ram
    assert found.disk_free > 0
    assert 0 <= found.vram_free <= found.vram_total


@pytest.mark.slow
def test_e2b_estimate_matches_the_peak_rss_of_a_real_chat(starter_model: Path) -> None:
    """E2B-shaped Gemma 4 Q4_K_M at the app's default 8192-token context, PLE on disk.

    A fresh process (bench/fit.py --child) loads it with Tern's engine, sends a
    1,000-token prompt of real text and takes a 32-token answer. The estimate is
    for the tokens that chat used, without the Qt window the child does not have.
    Its process overhead was not fitted here: bench/fit.py --calibrate derived it
    from the starter, tiny Gemma 4 and tiny Gemma 3n (peak RSS less the model
    parts, least squares over vocabulary size), and the Qt share from
    `tern --self-test` on the starter. The peak comes at load, when llama.cpp
    holds repacked Q4_K weights next to their file pages; `peak_ram` models that,
    `total_ram` what stays resident for the chat.
    """
    model = ensure_model(GEMMA4_E2B, "Q4_K_M", SYNTHETIC_CACHE, starter_model)
    (SYNTHETIC_CACHE / f"{GEMMA4_E2B.name}-F16.gguf").unlink(missing_ok=True)  # ~10 GB scratch
    command = [sys.executable, str(ROOT / "bench" / "fit.py"), "--child", str(model), "8192", "1000", "32"]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    run = json.loads(out.stdout.strip().splitlines()[-1])
    info = read_gguf_info(model)
    est = estimate_memory(info, 8192, tokens=run["tokens_used"], include_ui=False)
    assert run["tokens_used"] >= 1000
    assert est.total_ram / run["peak_rss"] == pytest.approx(1.0, abs=0.15)
    assert est.total_ram / run["rss_after_chat"] == pytest.approx(1.0, abs=0.10)
    assert est.peak_ram / run["peak_rss"] == pytest.approx(1.0, abs=0.10)
    assert run["ple_resident"] <= est.ple_paged < info.ple_bytes // 10
    # What the UI shows by default, a full context, is not below what this shorter chat used.
    assert estimate_memory(info, 8192, include_ui=False).total_ram >= est.total_ram


def test_another_quantization_scales_only_the_weights(models: dict[str, Path]) -> None:
    from app.core.models.fit import for_file

    info = read_gguf_info(models["tiny-gemma4"])
    base = estimate_memory(info, 4096)
    double = for_file(base, info.file_size, 2 * info.file_size)
    assert double.weights_ram == 2 * base.weights_ram and double.ple_disk == 2 * base.ple_disk
    assert (double.kv_cache, double.compute_resident, double.overhead) == (
        base.kv_cache,
        base.compute_resident,
        base.overhead,
    )
    assert double.disk == 2 * info.file_size
