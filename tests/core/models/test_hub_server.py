"""The loopback hub against the real huggingface_hub client: listings, metadata, downloads, errors and faults."""

from __future__ import annotations

import hashlib
import http.client
import io
import threading
import time
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, constants, get_hf_file_metadata, hf_hub_download, hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get

from app.core.models.starter import STARTER_SHA256
from tests.fixtures.hub import GATED_NAME, GATED_REPO, PUBLIC_REPO, SPLIT_NAMES, SPLIT_REPO, STARTER_NAME
from tests.fixtures.hub_server import Fault, HubServer

pytestmark = pytest.mark.usefixtures("plain_hf_client")

SPLIT_PART = SPLIT_NAMES[0]


def sha256(data: bytes) -> str:
    """Hex sha256 of `data`."""
    return hashlib.sha256(data).hexdigest()


def url(server: HubServer, repo: str, filename: str, revision: str | None = None) -> str:
    """The resolve URL of a served file."""
    return hf_hub_url(repo, filename, revision=revision, endpoint=server.endpoint)


def fetch(server: HubServer, repo: str, filename: str, **kwargs: object) -> bytes:
    """The file through `http_get` (which retries and resumes on its own)."""
    buffer = io.BytesIO()
    headers = {"authorization": f"Bearer {server.valid_token}"} if repo == GATED_REPO else None
    http_get(url(server, repo, filename), buffer, headers=headers, **kwargs)  # type: ignore[arg-type]
    return buffer.getvalue()


def download(server: HubServer, repo: str, filename: str, cache: Path, token: str | bool = False) -> Path:
    """The file through `hf_hub_download` into `cache`."""
    return Path(hf_hub_download(repo, filename, endpoint=server.endpoint, cache_dir=cache, token=token))


# --- listings and metadata ------------------------------------------------------------------


def test_model_info_lists_siblings_with_sizes_and_sha256(hub_server: HubServer, starter_model: Path) -> None:
    info = HfApi(endpoint=hub_server.endpoint).model_info(PUBLIC_REPO, files_metadata=True, token=False)
    assert (info.id, info.sha, info.private, info.gated) == (PUBLIC_REPO, hub_server.commit(PUBLIC_REPO), False, False)
    assert info.card_data is not None and info.card_data.license == "gemma"
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert set(siblings) == {STARTER_NAME, "README.md"}
    gguf = siblings[STARTER_NAME]
    assert gguf.size == starter_model.stat().st_size
    assert gguf.lfs is not None and gguf.lfs.sha256 == STARTER_SHA256 and gguf.lfs.size == gguf.size
    readme = siblings["README.md"]
    content = hub_server.path(PUBLIC_REPO, "README.md").read_bytes()
    assert readme.lfs is None and readme.size == len(content)
    assert readme.blob_id == hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()
    [request] = hub_server.requests
    assert (request.method, request.path, request.query) == ("GET", f"/api/models/{PUBLIC_REPO}", "blobs=true")


def test_model_info_at_a_revision_with_expand(hub_server: HubServer) -> None:
    api = HfApi(endpoint=hub_server.endpoint)
    commit = hub_server.commit(PUBLIC_REPO)
    plain = api.model_info(PUBLIC_REPO, revision=commit, token=False)
    assert plain.sha == commit and all(s.size is None for s in plain.siblings or [])
    expanded = api.model_info(PUBLIC_REPO, expand=["gated", "sha"], token=False)
    assert (expanded.sha, expanded.gated, expanded.siblings) == (commit, False, None)
    gated = api.model_info(GATED_REPO, token=False)  # info is public, as on the hub
    assert gated.gated == "manual"
    paths = [(r.path, r.query) for r in hub_server.requests]
    assert paths[:2] == [
        (f"/api/models/{PUBLIC_REPO}/revision/{commit}", ""),
        (f"/api/models/{PUBLIC_REPO}", "expand=gated&expand=sha"),
    ]


def test_list_repo_tree_lists_files_with_lfs_sha256(hub_server: HubServer) -> None:
    api = HfApi(endpoint=hub_server.endpoint)
    entries = {e.path: e for e in api.list_repo_tree(PUBLIC_REPO, recursive=True, token=False)}
    assert set(entries) == {STARTER_NAME, "README.md"}
    gguf = entries[STARTER_NAME]
    assert gguf.lfs is not None and gguf.lfs.sha256 == STARTER_SHA256  # type: ignore[union-attr]
    assert gguf.size == hub_server.blob(PUBLIC_REPO, STARTER_NAME).size  # type: ignore[union-attr]
    assert entries["README.md"].lfs is None  # type: ignore[union-attr]
    [expanded] = [e for e in api.list_repo_tree(SPLIT_REPO, expand=True, token=False) if e.path == SPLIT_PART]
    assert expanded.last_commit is not None and expanded.last_commit.oid == hub_server.commit(SPLIT_REPO)
    queries = [(r.path, r.query) for r in hub_server.requests]
    assert queries == [
        (f"/api/models/{PUBLIC_REPO}/tree/main", "recursive=true&expand=false"),
        (f"/api/models/{SPLIT_REPO}/tree/main", "recursive=false&expand=true"),
    ]


def test_file_metadata_gives_commit_etag_and_size(hub_server: HubServer) -> None:
    meta = get_hf_file_metadata(url(hub_server, PUBLIC_REPO, STARTER_NAME), token=False)
    assert (meta.commit_hash, meta.etag) == (hub_server.commit(PUBLIC_REPO), STARTER_SHA256)
    assert meta.size == hub_server.blob(PUBLIC_REPO, STARTER_NAME).size
    assert meta.xet_file_data is None  # never Xet: plain HTTP downloads
    readme = get_hf_file_metadata(url(hub_server, PUBLIC_REPO, "README.md"), token=False)
    assert readme.etag == hub_server.blob(PUBLIC_REPO, "README.md").oid  # git oid for non-LFS files
    assert [(r.method, r.status) for r in hub_server.requests] == [("HEAD", 200), ("HEAD", 200)]


# --- downloads -------------------------------------------------------------------------------


def test_hf_hub_download_is_byte_identical(hub_server: HubServer, tmp_path: Path) -> None:
    path = download(hub_server, PUBLIC_REPO, STARTER_NAME, tmp_path)
    assert path.parent.name == hub_server.commit(PUBLIC_REPO)
    assert sha256(path.read_bytes()) == STARTER_SHA256
    assert [(r.method, r.range_header, r.status) for r in hub_server.requests] == [
        ("HEAD", None, 200),
        ("GET", None, 200),
    ]


def test_split_parts_download_and_join(hub_server: HubServer, tmp_path: Path, tiny_gemma: Path) -> None:
    parts = [download(hub_server, SPLIT_REPO, name, tmp_path).read_bytes() for name in SPLIT_NAMES]
    assert b"".join(parts) == tiny_gemma.read_bytes()


def test_http_get_resume_sends_range(hub_server: HubServer, tiny_gemma: Path) -> None:
    data = tiny_gemma.read_bytes()
    buffer = io.BytesIO(data[:1000])
    buffer.seek(0, io.SEEK_END)
    headers = {"authorization": f"Bearer {hub_server.valid_token}"}
    http_get(url(hub_server, GATED_REPO, GATED_NAME), buffer, resume_size=1000, headers=headers)
    assert buffer.getvalue() == data
    [request] = hub_server.requests
    assert (request.range_header, request.status) == ("bytes=1000-", 206)


def test_raw_ranges(hub_server: HubServer) -> None:
    data = hub_server.path(SPLIT_REPO, SPLIT_PART).read_bytes()
    with httpx2.Client() as client:
        answer = client.get(url(hub_server, SPLIT_REPO, SPLIT_PART), headers={"Range": "bytes=10-19"})
        assert answer.status_code == 206 and answer.content == data[10:20]
        assert answer.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
        tail = client.get(url(hub_server, SPLIT_REPO, SPLIT_PART), headers={"Range": "bytes=-5"})
        assert tail.content == data[-5:]
        beyond = client.get(url(hub_server, SPLIT_REPO, SPLIT_PART), headers={"Range": f"bytes={len(data)}-"})
        assert beyond.status_code == 416


# --- errors ----------------------------------------------------------------------------------


def test_gated_repo_needs_the_token(hub_server: HubServer, tmp_path: Path, tiny_gemma: Path) -> None:
    with pytest.raises(GatedRepoError) as anonymous:
        download(hub_server, GATED_REPO, GATED_NAME, tmp_path)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as wrong:
        download(hub_server, GATED_REPO, GATED_NAME, tmp_path, token="hf_wrong")
    assert wrong.value.response.status_code == 403
    path = download(hub_server, GATED_REPO, GATED_NAME, tmp_path, token=hub_server.valid_token)
    assert path.read_bytes() == tiny_gemma.read_bytes()


def test_missing_repo_file_and_revision(hub_server: HubServer, tmp_path: Path) -> None:
    api = HfApi(endpoint=hub_server.endpoint)
    with pytest.raises(RepositoryNotFoundError):
        api.model_info("nobody/nothing-GGUF", token=False)
    with pytest.raises(RepositoryNotFoundError):
        download(hub_server, "nobody/nothing-GGUF", "x.gguf", tmp_path)
    with pytest.raises(RemoteEntryNotFoundError) as missing:
        download(hub_server, PUBLIC_REPO, "missing.gguf", tmp_path)
    assert isinstance(missing.value, EntryNotFoundError)
    assert not isinstance(missing.value, RepositoryNotFoundError)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(PUBLIC_REPO, revision="v9", token=False)
    with pytest.raises(RevisionNotFoundError):
        get_hf_file_metadata(url(hub_server, PUBLIC_REPO, "README.md", revision="v9"), token=False)


# --- faults ----------------------------------------------------------------------------------


def test_drop_resumes_with_range(hub_server: HubServer) -> None:
    """A dropped body is resumed with `Range`, from the last whole 10 MiB chunk the client had written."""
    hub_server.faults[STARTER_NAME] = Fault(drop_at=0.4)
    assert sha256(fetch(hub_server, PUBLIC_REPO, STARTER_NAME)) == STARTER_SHA256
    first, second = hub_server.requests_for(STARTER_NAME)
    size = hub_server.blob(PUBLIC_REPO, STARTER_NAME).size
    kept = int(size * 0.4) // constants.DOWNLOAD_CHUNK_SIZE * constants.DOWNLOAD_CHUNK_SIZE
    assert (first.range_header, first.status) == (None, 200)
    assert (second.range_header, second.status) == (f"bytes={kept}-", 206)
    assert STARTER_NAME not in hub_server.faults


def test_drop_in_the_first_chunk_restarts_from_zero(hub_server: HubServer, tiny_gemma: Path) -> None:
    """httpx drops its partly filled 10 MiB chunk on error, so a drop before 10 MiB restarts without `Range`."""
    hub_server.faults[GATED_NAME] = Fault(drop_at=0.4, times=2)
    assert fetch(hub_server, GATED_REPO, GATED_NAME) == tiny_gemma.read_bytes()
    assert [r.range_header for r in hub_server.requests_for(GATED_NAME)] == [None, None, None]


def test_connection_reset_is_not_retried(hub_server: HubServer) -> None:
    """http_get retries RemoteProtocolError (FIN mid-body) and timeouts, but a TCP reset (ReadError) escapes."""
    hub_server.faults[SPLIT_PART] = Fault(drop_at=0.5, reset=True)
    with pytest.raises(httpx2.ReadError):
        fetch(hub_server, SPLIT_REPO, SPLIT_PART)
    assert len(hub_server.requests_for(SPLIT_PART)) == 1


def test_stall_times_out_then_restarts(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """A silent server trips the read timeout (`HF_HUB_DOWNLOAD_TIMEOUT`); http_get waits 1 s and asks again.

    The 1 MiB received before the stall is below one 10 MiB chunk, so it is lost: the retry has no `Range`.
    Each attempt costs timeout + 1 s; after 6 silent attempts in a row (5 retries) http_get raises the timeout.
    """
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 1)
    hub_server.faults[SPLIT_PART] = Fault(stall_after=1 << 20, stall_s=30)
    began = time.monotonic()
    data = fetch(hub_server, SPLIT_REPO, SPLIT_PART)
    elapsed = time.monotonic() - began
    assert data == hub_server.path(SPLIT_REPO, SPLIT_PART).read_bytes()
    assert 1.9 < elapsed < 6
    assert [(r.range_header, r.status) for r in hub_server.requests_for(SPLIT_PART)] == [(None, 200), (None, 200)]


def test_stall_on_every_attempt_raises_the_timeout(hub_server: HubServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the retry budget cut to one, two silent answers end in `httpx2.ReadTimeout`."""
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.3)
    hub_server.faults[SPLIT_PART] = Fault(stall_after=1000, stall_s=30, times=2)
    with pytest.raises(httpx2.ReadTimeout):
        fetch(hub_server, SPLIT_REPO, SPLIT_PART, _nb_retries=1)
    assert len(hub_server.requests_for(SPLIT_PART)) == 2


def test_corruption_goes_unnoticed_by_hf_hub_download(hub_server: HubServer, tmp_path: Path) -> None:
    """The client checks only the size: a flipped byte lands in the cache; callers must check the sha256."""
    offset = 123_457
    hub_server.faults[SPLIT_PART] = Fault(corrupt_at=offset)
    got = download(hub_server, SPLIT_REPO, SPLIT_PART, tmp_path).read_bytes()
    want = hub_server.path(SPLIT_REPO, SPLIT_PART).read_bytes()
    assert len(got) == len(want)
    assert [i for i in range(len(want)) if got[i] != want[i]] == [offset]


def test_status_fault_fails_the_get_without_retry(hub_server: HubServer, tmp_path: Path) -> None:
    """http_get retries only 408 and 429: a 503 on the GET raises at once (the HEAD before it is not faulted)."""
    hub_server.faults[SPLIT_PART] = Fault(status=503)
    with pytest.raises(HfHubHTTPError) as failed:
        download(hub_server, SPLIT_REPO, SPLIT_PART, tmp_path)
    assert failed.value.response.status_code == 503
    assert [(r.method, r.status) for r in hub_server.requests] == [("HEAD", 200), ("GET", 503)]


def test_rate_limit_throttles(hub_server: HubServer) -> None:
    hub_server.faults[SPLIT_PART] = Fault(rate=1_000_000)
    began = time.monotonic()
    with httpx2.Client() as client:
        answer = client.get(url(hub_server, SPLIT_REPO, SPLIT_PART), headers={"Range": "bytes=0-299999"})
    assert len(answer.content) == 300_000
    assert 0.25 < time.monotonic() - began < 2


def test_stop_returns_promptly_during_a_stall(hub_repos: dict[str, dict[str, Path]]) -> None:
    server = HubServer(hub_repos).start()
    server.faults[SPLIT_PART] = Fault(stall_after=1000, stall_s=60)
    port = int(server.endpoint.rsplit(":", 1)[1])
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", f"/{SPLIT_REPO}/resolve/main/{SPLIT_PART}")
        response = connection.getresponse()
        assert response.read(1000)
        stopper = threading.Thread(target=server.stop)
        began = time.monotonic()
        stopper.start()
        stopper.join(timeout=5)
        assert time.monotonic() - began < 2
        assert not stopper.is_alive()
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    finally:
        connection.close()
        server.stop()
