"""Image projectors: listed with their repository's models, downloaded and verified with them, found beside them.

Against the loopback hub (the real huggingface_hub client behind Tern's network
gate) and with projectors written by tools/synthetic_mmproj.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from app.core.errors import UserError
from app.core.models import download as dl
from app.core.models.download import PROJECTOR, DownloadError, DownloadJob, run_job
from app.core.models.hub import RemoteFile, RemoteModel, RemoteProjector, fetch_model, group_options, pairing
from app.core.models.names import base_name, is_projector_name, precision_rank, projector_preference, quant_label
from app.core.models.network import online
from app.core.models.projectors import check_pairs, projector_for
from app.core.models.registry import ModelRegistry, inspect
from tests.fixtures.hub import (
    FOREIGN_PROJECTOR_NAME,
    PROJECTOR_NAME,
    PROJECTOR_Q8_NAME,
    VISION_NAME,
    VISION_REPO,
)
from tests.fixtures.hub_server import Fault, HubServer
from tools.synthetic_mmproj import Key, plan, write_plan, write_projector


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def listing(server: HubServer) -> RemoteModel:
    with online("test: list files"):
        return fetch_model(VISION_REPO, server.endpoint)


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after 0.1 s instead of seconds (the logic is the same)."""
    monkeypatch.setattr(dl, "BACKOFF_S", (0.1, 0.1, 0.1, 0.1))


def test_public_projector_names() -> None:
    names = {
        "mmproj-gemma-4-E2B-it-Q8_0.gguf": ("Q8_0", "gemma-4-e2b-it"),
        "mmproj-gemma-4-e2b-it-f16.gguf": ("F16", "gemma-4-e2b-it"),
        "mmproj-gemma-4-E4B-it-BF16.gguf": ("BF16", "gemma-4-e4b-it"),
        "mmproj-model-f16.gguf": ("F16", "model"),
        "mmproj-F16.gguf": ("F16", ""),
        "mmproj-google_gemma-4-E2B-it-f16.gguf": ("F16", "google-gemma-4-e2b-it"),
    }
    for name, (label, base) in names.items():
        assert is_projector_name(name) and quant_label(name) == label and base_name(name) == base
    assert base_name("gemma-4-E2B-it-UD-Q4_K_XL.gguf") == base_name("gemma-4-E2B-it-Q8_0.gguf") == "gemma-4-e2b-it"
    assert not is_projector_name("gemma-4-E2B-it-Q4_K_M.gguf") and not is_projector_name("mmproj-notes.txt")
    assert precision_rank("BF16") < precision_rank("Q8_0") < precision_rank("Q4_K_M")
    model = "gemma-4-E2B-it-Q4_K_M.gguf"
    ranked = sorted(
        ["mmproj-F16.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf", "mmproj-gemma-4-E2B-it-BF16.gguf"],
        key=lambda n: projector_preference(model, n),
    )
    assert ranked == ["mmproj-gemma-4-E2B-it-BF16.gguf", "mmproj-gemma-4-E2B-it-Q8_0.gguf", "mmproj-F16.gguf"]
    files = [RemoteFile("gemma-4-E2B-it-Q8_0.gguf", 9, None), RemoteFile("mmproj-gemma-4-E2B-it-f16.gguf", 1, None)]
    assert [o.label for o in group_options(files)] == ["Q8_0"]  # the projector is no model option


def test_a_listing_pairs_the_model_with_its_projectors(hub_server: HubServer) -> None:
    remote = listing(hub_server)
    assert [o.first for o in remote.options] == [VISION_NAME]
    # The 640-wide projector is for another model; full precision is preferred.
    assert [p.name for p in remote.projectors] == [PROJECTOR_NAME, PROJECTOR_Q8_NAME]
    first = remote.projectors[0]
    assert first.label == "F16" and first.size == hub_server.blob(VISION_REPO, PROJECTOR_NAME).size
    assert first.file.sha256 == hub_server.blob(VISION_REPO, PROJECTOR_NAME).sha256
    assert first.info is not None and first.info.n_embd_text == 64 and first.problem == ""
    assert first.metadata is not None and first.metadata["clip.vision.embedding_length"] == 32
    reads = hub_server.requests_for(FOREIGN_PROJECTOR_NAME)  # its header was read to learn whom it feeds
    assert len(reads) == 1 and reads[0].range_header is not None and reads[0].range_header.startswith("bytes=0-")
    # Without the model's header (a gated repo) nothing can be ruled out, except a file that is no image projector.
    audio_only = RemoteProjector(RemoteFile("mmproj-audio.gguf", 1, None), {"general.type": "mmproj"})
    unread = RemoteProjector(RemoteFile("mmproj-x.gguf", 1, None))
    assert pairing([*remote.projectors, audio_only, unread], None) == [*remote.projectors, unread]


def test_a_projector_tern_cannot_use_is_listed_with_why(tmp_path: Path, hub_repos: dict[str, dict[str, Path]]) -> None:
    keys, tensors = plan("gemma4v", 64)
    unified = [Key(k.name, k.vtype, "gemma4uv") if k.name.endswith("projector_type") else k for k in keys]
    path = write_plan(tmp_path / "mmproj-model-f16.gguf", unified, tensors)
    model = hub_repos[VISION_REPO][VISION_NAME]
    with HubServer({"google/unified-GGUF": {"model-Q4_0.gguf": model, path.name: path}}) as server, online("test"):
        remote = fetch_model("google/unified-GGUF", server.endpoint)
    [projector] = remote.projectors
    assert projector.info is None and projector.metadata is not None
    assert projector.problem == (
        "'mmproj-model-f16.gguf' is a Gemma 4 (unified) image projector, which Tern does not support yet."
    )


def test_a_model_and_its_projector_download_resume_and_verify_together(
    hub_server: HubServer, tmp_path: Path, fast_backoff: None
) -> None:
    remote = listing(hub_server)
    job = DownloadJob.for_option(
        VISION_REPO, remote.commit, remote.options[0], tmp_path, hub_server.endpoint, remote.projectors[0].file
    )
    assert job.projector is not None and job.projector.role == PROJECTOR
    assert job.total == remote.options[0].size + remote.projectors[0].size  # progress covers both
    hub_server.clear_requests()  # the listing read the projector's first bytes, for its metadata
    hub_server.faults[PROJECTOR_NAME] = Fault(drop_at=0.5)
    seen: list[dl.Progress] = []
    paths = run_job(job, threading.Event(), seen.append, None, 5.0)
    assert paths == [tmp_path / VISION_REPO / VISION_NAME, tmp_path / VISION_REPO / PROJECTOR_NAME]
    assert sha256(paths[1]) == hub_server.blob(VISION_REPO, PROJECTOR_NAME).sha256
    gets = hub_server.requests_for(PROJECTOR_NAME)
    assert len(gets) == 2 and gets[1].range_header not in (None, "bytes=0-")  # resumed, not restarted
    assert seen[-1].done == seen[-1].total == job.total
    assert projector_for(paths[0]) == paths[1]


def test_a_damaged_projector_is_deleted_and_the_model_waits_for_it(hub_server: HubServer, tmp_path: Path) -> None:
    remote = listing(hub_server)
    projector = remote.projectors[0]
    job = DownloadJob.for_option(
        VISION_REPO, remote.commit, remote.options[0], tmp_path, hub_server.endpoint, projector.file
    )
    hub_server.faults[PROJECTOR_NAME] = Fault(corrupt_at=projector.size // 2)
    with pytest.raises(DownloadError, match=f"{PROJECTOR_NAME} arrived damaged"):
        run_job(job, threading.Event(), lambda _p: None)
    folder = tmp_path / VISION_REPO
    assert sorted(p.name for p in folder.iterdir()) == [VISION_NAME + ".part"]  # verified, installed only together
    paths = run_job(job, threading.Event(), lambda _p: None)
    assert [p.name for p in paths] == [VISION_NAME, PROJECTOR_NAME] and projector_for(paths[0]) == paths[1]


def test_a_projector_alone_goes_next_to_its_installed_model(hub_server: HubServer, tmp_path: Path) -> None:
    remote = listing(hub_server)
    model = tmp_path / "mine" / "nested" / "tiny.gguf"
    model.parent.mkdir(parents=True)
    shutil.copyfile(hub_server.path(VISION_REPO, VISION_NAME), model)
    assert projector_for(model) is None
    job = DownloadJob.for_projector(VISION_REPO, remote.commit, remote.projectors[1].file, model, hub_server.endpoint)
    assert job.label == "image projector Q8_0" and job.for_model == str(model)
    [path] = run_job(job, threading.Event(), lambda _p: None)
    assert path == model.parent / PROJECTOR_Q8_NAME and projector_for(model) == path
    check_pairs(model, path)
    foreign = write_projector(model.parent / "mmproj-other-F16.gguf", "gemma3", 640)
    with pytest.raises(UserError, match=r"is for Gemma 3 models, and the loaded model is not one \(gemma4\)"):
        check_pairs(model, foreign)
    with pytest.raises(UserError, match="is a gemma4 language model, not an image projector"):
        check_pairs(model, model)
    restored = DownloadJob.from_dict(json.loads(json.dumps(job.as_dict())))  # the queue file keeps it all
    assert restored.target(restored.files[0]) == path and restored.for_model == str(model)


def test_the_projector_beside_a_model(tmp_path: Path, tiny_gemma: Path) -> None:
    model = tmp_path / "gemma-4-tiny-it-Q4_K_M.gguf"
    shutil.copyfile(tiny_gemma, model)
    q8 = write_projector(tmp_path / "mmproj-gemma-4-tiny-it-Q8_0.gguf", "gemma4v", 64)
    assert projector_for(model) == q8
    f16 = write_projector(tmp_path / "mmproj-F16.gguf", "gemma4v", 64)
    assert projector_for(model) == q8  # the one named after the model wins over a more precise one
    q8.unlink()
    assert projector_for(model) == f16
    write_projector(tmp_path / "mmproj-gemma-4-tiny-it-BF16.gguf", "gemma3", 640)  # for another model
    (tmp_path / "mmproj-gemma-4-tiny-it-F32.gguf").write_bytes(b"not a gguf")  # unreadable: passed over
    assert projector_for(model) == f16
    f16.unlink()
    assert projector_for(model) is None
    assert projector_for(tmp_path / "missing.gguf") is None
    projector_named_model = tmp_path / "mmproj-is-the-model.gguf"
    shutil.copyfile(tiny_gemma, projector_named_model)
    assert projector_for(projector_named_model) is None  # never the model itself


def test_the_installed_list_knows_which_models_see_images(tmp_path: Path, tiny_gemma: Path) -> None:
    folder = tmp_path / "models" / VISION_REPO
    folder.mkdir(parents=True)
    q8 = folder / "tiny-Q8_0.gguf"
    q4 = folder / "tiny-Q4_0.gguf"
    for path in (q8, q4):
        shutil.copyfile(tiny_gemma, path)
    registry = ModelRegistry(tmp_path / "models.json")
    for path in (q8, q4):
        registry.add(inspect(path, repo_id=VISION_REPO, label=quant_label(path.name)))
    assert [m.sees_images for m in registry.models()] == [False, False]
    projector = write_projector(folder / "mmproj-tiny-f16.gguf", "gemma4v", 64)
    assert {m.projector for m in registry.models()} == {str(projector)}
    assert "projector" not in json.loads((tmp_path / "models.json").read_text())["models"][0]  # found, never saved
    for path in (q8, q4):
        registry.attach_projector(path, projector)  # downloaded by Tern for both
    entry = registry.get(q8)
    assert entry is not None and entry.size == q8.stat().st_size + projector.stat().st_size
    assert registry.remove(q8) == [q8]  # the projector stays: the other quantization uses it
    assert projector.exists() and registry.models()[0].sees_images
    assert registry.remove(q4) == [q4, projector]  # the last model to use it takes it along
    projector.unlink(missing_ok=True)
