"""What the loopback hub says about its repos: file hashes, model info and tree JSON, byte ranges."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LAST_MODIFIED = "2025-03-12T10:00:00.000Z"
CREATED_AT = "2025-03-01T09:00:00.000Z"
LFS_SUFFIXES = (".gguf", ".bin", ".safetensors")
LFS_MIN_SIZE = 10 * 1024 * 1024


@dataclass(frozen=True)
class Blob:
    """What the hub knows about one file."""

    size: int
    oid: str  # git blob sha1; for LFS files, of the pointer file
    sha256: str | None  # LFS files only
    pointer_size: int | None  # LFS files only

    @property
    def etag(self) -> str:
        """The ETag the hub sends: the sha256 for LFS files, the git oid otherwise."""
        return self.sha256 or self.oid


@dataclass(frozen=True)
class Repo:
    """One served repository."""

    repo_id: str
    files: dict[str, Path]
    blobs: dict[str, Blob]
    sha: str
    gated: bool
    info: dict[str, Any]


_blob_cache: dict[tuple[str, int, int, bool], Blob] = {}
_blob_lock = threading.Lock()


def is_lfs(filename: str, size: int) -> bool:
    """Whether the hub would store this file with Git LFS (weights, or anything of 10 MiB or more)."""
    return filename.endswith(LFS_SUFFIXES) or size >= LFS_MIN_SIZE


def git_oid(content: bytes) -> str:
    """Git's blob id of `content`."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def describe(path: Path, lfs: bool) -> Blob:
    """Size and hashes of `path` (cached per path, size and mtime: hashing a big model takes a while)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, lfs)
    with _blob_lock:
        if key in _blob_cache:
            return _blob_cache[key]
    if lfs:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(4 * 1024 * 1024):
                digest.update(chunk)
        sha256 = digest.hexdigest()
        pointer = f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {st.st_size}\n".encode()
        blob = Blob(st.st_size, git_oid(pointer), sha256, len(pointer))
    else:
        blob = Blob(st.st_size, git_oid(path.read_bytes()), None, None)
    with _blob_lock:
        _blob_cache[key] = blob
    return blob


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(first, last) byte of a single `bytes=` range; None to serve it all; ValueError if unsatisfiable."""
    if not header or not header.strip().startswith("bytes=") or "," in header:
        return None
    first_s, _, last_s = header.strip()[len("bytes=") :].partition("-")
    try:
        if not first_s:
            first, last = max(size - int(last_s), 0), size - 1
        else:
            first = int(first_s)
            last = min(int(last_s), size - 1) if last_s else size - 1
    except ValueError:
        return None
    if first >= size or first > last:
        raise ValueError(header)
    return first, last


def model_info(repo: Repo, blobs: bool, expand: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON of `GET /api/models/{repo}`."""
    siblings: list[dict[str, Any]] = []
    for name, blob in sorted(repo.blobs.items()):
        sibling: dict[str, Any] = {"rfilename": name}
        if blobs:
            sibling.update(size=blob.size, blobId=blob.oid)
            if blob.sha256 is not None:
                sibling["lfs"] = {"sha256": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        siblings.append(sibling)
    author = repo.repo_id.split("/")[0]
    info: dict[str, Any] = {
        "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id,
        "modelId": repo.repo_id,
        "author": author,
        "sha": repo.sha,
        "lastModified": LAST_MODIFIED,
        "createdAt": CREATED_AT,
        "private": False,
        "disabled": False,
        "gated": "manual" if repo.gated else False,
        "downloads": 0,
        "likes": 0,
        "library_name": "gguf",
        "pipeline_tag": "text-generation",
        "tags": ["gguf", "gemma", "text-generation", "license:gemma", "endpoints_compatible", "region:us"],
        "cardData": {"license": "gemma", "library_name": "gguf", "pipeline_tag": "text-generation"},
        "siblings": siblings,
        "spaces": [],
        "usedStorage": sum(b.size for b in repo.blobs.values()),
        **repo.info,
    }
    wanted = set(expand)
    if wanted:
        info = {k: v for k, v in info.items() if k in wanted or k in ("_id", "id")}
    return info


def _entry(repo: Repo, path: str, blob: Blob | None, expand: bool) -> dict[str, Any]:
    if blob is None:
        entry: dict[str, Any] = {"type": "directory", "oid": git_oid(path.encode()), "size": 0, "path": path}
    else:
        entry = {"type": "file", "oid": blob.oid, "size": blob.size, "path": path}
        if blob.sha256 is not None:
            entry["lfs"] = {"oid": blob.sha256, "size": blob.size, "pointerSize": blob.pointer_size}
        if expand:
            entry["securityFileStatus"] = {
                "status": "safe",
                "avScan": {"virusFound": False, "virusNames": None},
                "pickleImportScan": None,
            }
    if expand:
        entry["lastCommit"] = {"id": repo.sha, "title": "Upload folder using huggingface_hub", "date": LAST_MODIFIED}
    return entry


def tree(repo: Repo, path: str, recursive: bool, expand: bool) -> list[dict[str, Any]] | None:
    """The JSON of `GET /api/models/{repo}/tree/{rev}/{path}`; None when `path` is no folder of the repo."""
    folders = {"/".join(name.split("/")[:i]) for name in repo.blobs for i in range(1, name.count("/") + 1)}
    if path and path not in folders:
        return None
    prefix = f"{path}/" if path else ""

    def listed(name: str) -> bool:
        return name.startswith(prefix) and (recursive or "/" not in name[len(prefix) :])

    dirs = [_entry(repo, d, None, expand) for d in sorted(folders) if listed(d)]
    files = [_entry(repo, n, b, expand) for n, b in sorted(repo.blobs.items()) if listed(n)]
    return dirs + files


def fake_commit(repo_id: str) -> str:
    """A stable 40-hex commit sha for a repo."""
    return hashlib.sha1(f"commit:{repo_id}".encode()).hexdigest()
