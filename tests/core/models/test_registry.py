"""The installed-models list: the built-in starter, copies recognised by content, and errors in plain words."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.core.engine.gguf_info import GgufError
from app.core.errors import UserError
from app.core.models.registry import AlreadyInstalledError, ModelRegistry, fingerprint, import_error, inspect
from app.core.models.starter import STARTER_DISPLAY_NAME, ensure_starter_model


def test_the_starter_is_listed_once_assembled_and_is_never_deleted(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "models.json")
    starter = tmp_path / "models" / "gemma-3-270m-q4_k_m.gguf"
    registry.add_builtin(starter)  # not assembled yet: nothing to list
    assert registry.models() == []
    starter = ensure_starter_model(tmp_path / "models")
    registry.add_builtin(starter)
    [listed] = registry.models()
    assert listed.builtin and listed.display_name == STARTER_DISPLAY_NAME and not listed.imported
    with pytest.raises(UserError, match="built into Tern and cannot be deleted"):
        registry.remove(listed.path)
    assert starter.exists()
    assert ModelRegistry(tmp_path / "models.json").models()[0].builtin  # kept in the file


def test_a_copy_under_another_name_is_recognised(tmp_path: Path, starter_model: Path) -> None:
    registry = ModelRegistry(tmp_path / "models.json")
    first = registry.import_file(starter_model)
    copy = tmp_path / "renamed.gguf"
    shutil.copyfile(starter_model, copy)
    with pytest.raises(AlreadyInstalledError) as refused:
        registry.import_file(copy)
    assert refused.value.existing.path == first.path
    assert str(refused.value) == (
        f"renamed.gguf is already installed as {first.name} ({starter_model.name}); it was not added again."
    )
    assert [m.path for m in registry.models()] == [str(starter_model)]

    registry.add_builtin(ensure_starter_model(tmp_path / "models"))  # the same bytes, built in
    registry.remove(first.path)
    with pytest.raises(AlreadyInstalledError, match="copy of the starter model, which is built into Tern"):
        registry.import_file(copy)


def test_entries_from_before_fingerprints_are_fingerprinted_when_compared(tmp_path: Path, starter_model: Path) -> None:
    registry_file = tmp_path / "models.json"
    old = inspect(starter_model, imported=True).__dict__
    del old["fingerprint"], old["builtin"]  # as an earlier Tern wrote it
    registry_file.write_text(json.dumps({"models": [{**old, "from_a_newer_tern": 1}]}))
    registry = ModelRegistry(registry_file)
    assert registry.models()[0].fingerprint == ""  # unknown keys are left out, not fatal
    copy = tmp_path / "copy.gguf"
    shutil.copyfile(starter_model, copy)
    with pytest.raises(AlreadyInstalledError):
        registry.import_file(copy)
    assert json.loads(registry_file.read_text())["models"][0]["fingerprint"] == fingerprint(starter_model)


def test_a_file_that_is_not_a_model_is_refused_in_plain_words(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_bytes(b"this is not a model, just some text")
    with pytest.raises(GgufError) as refused:
        inspect(text)
    message = import_error(text, refused.value)
    assert message == (
        "notes.gguf is not a model Tern can load: it is not a GGUF model: it does not start with the GGUF "
        "signature, so it is another kind of file (or a damaged one)."
    )
    zeros = tmp_path / "zeros.gguf"
    zeros.write_bytes(
        b"GGUF" + (3).to_bytes(4, "little") + (0).to_bytes(8, "little") + (1).to_bytes(8, "little") + bytes(64)
    )
    with pytest.raises(GgufError) as corrupt:
        inspect(zeros)
    assert "empty or repeated metadata key; it is corrupt" in import_error(zeros, corrupt.value)
    for message in (import_error(text, refused.value), import_error(zeros, corrupt.value)):
        assert "b'" not in message and "''" not in message  # no Python notation
    assert import_error(text, RuntimeError("boom")).endswith("it was not added. The details are in Tern's log.")
