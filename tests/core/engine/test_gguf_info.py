"""GGUF validation runs before llama.cpp sees a file, so a bad file is an error message, never a crash."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from app.core.engine.gguf_info import MAX_METADATA, MAX_STRINGS, GgufError, read_gguf_info
from tests.fixtures.gguf_files import write_tiny_gguf


def test_reads_the_starter_model(starter_model: Path) -> None:
    info = read_gguf_info(starter_model)
    assert info.architecture == "gemma3"
    assert info.is_gemma
    assert info.name == "Gemma 3 270m"
    assert info.context_length == 32768
    assert info.block_count == 18
    assert info.chat_template is None
    assert info.file_size == starter_model.stat().st_size
    assert len(info.tensors) == 236
    # Counted from the shapes: a 270M model.
    assert 260_000_000 < info.total_parameters < 280_000_000
    embd = next(t for t in info.tensors if t.name == "token_embd.weight")
    assert embd.shape == (640, 262144)
    assert max(t.offset + t.n_bytes for t in info.tensors) <= info.file_size
    assert len(info.metadata["tokenizer.ggml.tokens"]) == 262144


def test_truncated_data_is_refused(starter_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.gguf"
    with starter_model.open("rb") as src, cut.open("wb") as dst:
        dst.write(src.read(50_000_000))
    with pytest.raises(GgufError, match="truncated"):
        read_gguf_info(cut)


def test_truncated_header_is_refused(starter_model: Path, tmp_path: Path) -> None:
    cut = tmp_path / "head.gguf"
    cut.write_bytes(starter_model.read_bytes()[:100_000])
    with pytest.raises(GgufError, match="ends in the middle of its header"):
        read_gguf_info(cut)


def test_garbage_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(GgufError, match="not a GGUF model"):
        read_gguf_info(junk)


def test_empty_and_missing_files_are_refused(tmp_path: Path) -> None:
    empty = tmp_path / "empty.gguf"
    empty.touch()
    with pytest.raises(GgufError, match="only 0 bytes"):
        read_gguf_info(empty)
    with pytest.raises(GgufError, match="Cannot read"):
        read_gguf_info(tmp_path / "absent.gguf")


def test_corrupt_counts_are_refused(starter_model: Path, tmp_path: Path) -> None:
    bad = tmp_path / "counts.gguf"
    shutil.copyfile(starter_model, bad)
    with bad.open("r+b") as f:
        f.seek(8)  # tensor count
        f.write((2**62).to_bytes(8, "little"))
    with pytest.raises(GgufError, match="impossible header"):
        read_gguf_info(bad)


def test_unknown_architecture_is_refused(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "odd.gguf", "no-such-arch")
    with pytest.raises(GgufError, match="architecture 'no-such-arch'"):
        read_gguf_info(path)


def test_projector_file_is_not_a_language_model(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "mmproj.gguf", "clip")
    with pytest.raises(GgufError, match="projector"):
        read_gguf_info(path)


def test_small_valid_file_reports_its_template(tmp_path: Path) -> None:
    path = write_tiny_gguf(tmp_path / "ok.gguf", "gemma3", template="{{ messages[0]['content'] }}")
    info = read_gguf_info(path)
    assert info.chat_template == "{{ messages[0]['content'] }}"
    assert info.total_parameters == 64
    assert info.quant_types == {"F32": 256}


@pytest.mark.parametrize("alignment", [0.5, "32", [32], 0, 24])
def test_malformed_alignment_is_a_clear_error(tmp_path: Path, alignment: object) -> None:
    from gguf import GGUFWriter

    path = tmp_path / "align.gguf"
    writer = GGUFWriter(str(path), "gemma3")
    writer.add_key_value("general.alignment", alignment, value_type(alignment))
    writer.add_tensor("token_embd.weight", __import__("numpy").zeros((4, 16), dtype="float32"))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(GgufError):
        read_gguf_info(path)


def value_type(value: object) -> object:
    from gguf import GGUFValueType

    return GGUFValueType.get_type(value) if not isinstance(value, int) else GGUFValueType.UINT32


def sparse_gguf(path: Path, n_kv: int, body: bytes = b"") -> Path:
    """A GGUF header over a 64 GiB sparse file: it costs nothing on disk but claims a lot."""
    with path.open("wb") as f:
        f.write(b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + n_kv.to_bytes(8, "little") + body)
        f.truncate(64 << 30)
    return path


def test_the_checks_work_is_bounded_by_what_the_file_holds(tmp_path: Path) -> None:
    # More entries than any real model has: refused from the counts alone.
    with pytest.raises(GgufError, match="impossible header"):
        read_gguf_info(sparse_gguf(tmp_path / "many.gguf", MAX_METADATA + 1))
    # Zero-filled entries (a hole in the file) stop at the first: an empty key.
    with pytest.raises(GgufError, match="empty or repeated metadata key"):
        read_gguf_info(sparse_gguf(tmp_path / "holes.gguf", MAX_METADATA))
    # A string array longer than any vocabulary is refused before it is walked.
    key = b"tokenizer.ggml.tokens"
    array = len(key).to_bytes(8, "little") + key + (9).to_bytes(4, "little") + (8).to_bytes(4, "little")
    with pytest.raises(GgufError, match="claims 2097153 strings"):
        read_gguf_info(sparse_gguf(tmp_path / "strings.gguf", 1, array + (MAX_STRINGS + 1).to_bytes(8, "little")))
