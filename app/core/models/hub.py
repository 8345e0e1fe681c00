"""What a Hugging Face repository offers: its GGUF files grouped by quantization, with sizes and checksums,
and the image projectors (mmproj GGUFs) made for its models, each described from its first bytes.

All hub I/O goes through huggingface_hub (`HfApi` for listings); every call
here must run inside `network.online(...)`, which only a user's action enters.
Hub failures become `HubError`s with a sentence the user can act on.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx2
import keyring
import keyring.errors
from huggingface_hub import hf_hub_url
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    HFValidationError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import (  # type: ignore[attr-defined]
    build_hf_headers,
    get_session,
    hf_raise_for_status,
    validate_repo_id,
)

from app import APP_NAME
from app.core.engine.gguf_info import GgufError, GgufInfo, HeaderTruncatedError, read_gguf_header, read_metadata
from app.core.engine.projector_info import ProjectorInfo, read_projector_info
from app.core.errors import UserError
from app.core.models import network
from app.core.models.names import SPLIT, is_projector_name, projector_preference, quant_label
from app.core.models.projectors import text_shape

log = logging.getLogger("tern.hub")
DEFAULT_ENDPOINT = "https://huggingface.co"
TOKEN_ACCOUNT = "huggingface-token"  # the keychain entry of the user's hub access token
_SKIP = ("imatrix",)  # importance matrices for quantizing, not models


class HubError(UserError):
    """A hub failure, phrased for the user."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a repository at a commit."""

    path: str
    size: int
    sha256: str | None  # from the LFS pointer; None for small non-LFS files


@dataclass(frozen=True)
class QuantOption:
    """One downloadable model in a repository: a GGUF, or all parts of a split GGUF."""

    label: str  # e.g. "Q4_K_M"
    files: tuple[RemoteFile, ...]

    @property
    def size(self) -> int:
        """Bytes to download."""
        return sum(f.size for f in self.files)

    @property
    def first(self) -> str:
        """The file llama.cpp opens (the first part of a split model)."""
        return self.files[0].path


@dataclass(frozen=True)
class RemoteProjector:
    """An image projector (mmproj GGUF) a repository offers for its models."""

    file: RemoteFile
    metadata: dict[str, Any] | None = None  # its GGUF metadata (shape, type); None when it could not be read
    # What projector_info makes of its header (its `path` names a stand-in, long gone); None when refused.
    info: ProjectorInfo | None = None
    problem: str = ""  # why Tern cannot use it (projector_info's words), "" when it can or it was not read

    @property
    def label(self) -> str:
        """Its precision as the file name says it, e.g. "F16"."""
        return quant_label(self.file.path)

    @property
    def name(self) -> str:
        """The file name."""
        return self.file.path.rsplit("/", 1)[-1]

    @property
    def size(self) -> int:
        """Bytes to download."""
        return self.file.size


@dataclass(frozen=True)
class RemoteModel:
    """A repository as listed by the hub."""

    repo_id: str
    commit: str
    gated: bool
    license: str
    options: list[QuantOption] = field(default_factory=list)
    header: GgufInfo | None = None  # one option's GGUF header: the model's shape, for fit estimates
    endpoint: str = DEFAULT_ENDPOINT  # the hub (or mirror) it was listed from
    projectors: list[RemoteProjector] = field(default_factory=list)  # image projectors, preferred first


def parse_repo_ref(text: str) -> str:
    """A repo id from "org/name" or a hub URL (…/org/name, …/org/name/blob/main/x.gguf); raises HubError."""
    text = text.strip()
    if "://" in text:
        parts = [p for p in urlparse(text).path.split("/") if p]
        if parts[:1] == ["models"]:
            parts = parts[1:]
        text = "/".join(parts[:2])
    try:
        if text.count("/") != 1:
            raise HFValidationError("expected org/name")
        validate_repo_id(text)
    except HFValidationError as exc:
        raise HubError(
            f"“{text}” is not a Hugging Face model id; use the form org/name or paste the model's URL."
        ) from exc
    return text


def safe_path(path: str) -> bool:
    """True for a plain relative path inside a repository (no absolute paths, "..", or backslashes)."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\\" not in path and ".." not in parts and "" not in parts


def group_options(files: list[RemoteFile]) -> list[QuantOption]:
    """GGUF files as download options; the parts of a split model form one option, projectors are left out."""
    singles: list[QuantOption] = []
    splits: dict[tuple[str, str], list[tuple[int, RemoteFile]]] = {}
    counts: dict[tuple[str, str], int] = {}
    for f in files:
        name = f.path.rsplit("/", 1)[-1]
        if not name.endswith(".gguf") or is_projector_name(name) or any(s in name.lower() for s in _SKIP):
            continue
        match = SPLIT.match(name)
        if match is None:
            singles.append(QuantOption(quant_label(f.path), (f,)))
            continue
        key = (f.path.rsplit("/", 1)[0] if "/" in f.path else "", match.group("stem"))
        splits.setdefault(key, []).append((int(match.group("index")), f))
        counts[key] = int(match.group("count"))
    for key, parts in splits.items():
        if len(parts) == counts[key]:  # an incomplete set cannot be loaded
            ordered = tuple(f for _, f in sorted(parts, key=lambda p: p[0]))
            singles.append(QuantOption(quant_label(ordered[0].path), ordered))
    return sorted(singles, key=lambda o: o.size)


def translate(exc: Exception, repo_id: str) -> HubError:
    """A user-facing error for a hub or network failure."""
    if isinstance(exc, GatedRepoError):
        return HubError(
            f"{repo_id} is gated: accept its licence on the model's page on Hugging Face, "
            "then add your access token in the model manager's settings."
        )
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"There is no model {repo_id} on the hub (or it is private).")
    if isinstance(exc, RevisionNotFoundError):
        return HubError(f"{repo_id} has no such revision.")
    if isinstance(exc, EntryNotFoundError):
        return HubError(f"A file of {repo_id} is no longer on the hub; refresh the model's file list.")
    if isinstance(exc, network.InsecureTokenError):
        return HubError(str(exc))
    if isinstance(exc, OfflineModeIsEnabled):
        return HubError("Tern is offline; browsing and downloading only happen when you ask for them.")
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else None
        if status in (401, 403):
            return HubError(f"The hub refused access to {repo_id} ({status}); check your access token.")
        return HubError(f"The hub answered with an error ({status}); try again later.")
    if isinstance(exc, (httpx2.ConnectError, httpx2.TimeoutException)):
        return unreachable(exc)
    log.warning("The connection to the hub failed", exc_info=exc)
    return HubError("The connection to the hub failed; try again. The details are in Tern's log.")


class HubUnreachableError(HubError):
    """The hub could not be reached at all (no network, DNS, refused, timed out): a local file may be the way."""


_UNREACHABLE_DETAIL = {
    network.NoAnswer.DNS: "its address could not be found (DNS)",
    network.NoAnswer.REFUSED: "the connection was refused",
    network.NoAnswer.OFFLINE: "there is no network connection",
    network.NoAnswer.TIMED_OUT: "it did not answer in time",
    network.NoAnswer.FAILED: "the connection failed",
}


def hub_name(url: str) -> str:
    """The hub's name in messages: Hugging Face for its own address, "the hub at <host>" for a mirror."""
    try:
        host = httpx2.URL(url).host
    except httpx2.InvalidURL:
        return "the hub"
    return "Hugging Face" if host == "huggingface.co" or host.endswith(".huggingface.co") else f"the hub at {host}"


def unreachable(exc: Exception) -> HubUnreachableError:
    """The message for a hub that gave no answer: why, that the computer may be offline, and that import works."""
    where = "the hub"
    with contextlib.suppress(AttributeError, RuntimeError):  # httpx raises when it has no request to tell of
        where = hub_name(str(exc.request.url))  # type: ignore[attr-defined]
    detail = _UNREACHABLE_DETAIL[network.why_no_answer(exc)]
    return HubUnreachableError(
        f"Tern could not reach {where}: {detail}. This computer may be offline. "
        "If you already have a model file, use “Import a GGUF file…” instead; Tern needs no network for that."
    )


def fetch_model(repo_id: str, endpoint: str = DEFAULT_ENDPOINT, token: str | None = None) -> RemoteModel:
    """List a repository's GGUF options and image projectors with sizes and sha256; needs `network.online`."""
    network.install()
    try:
        from huggingface_hub import HfApi  # most of huggingface_hub, which start-up does not need

        info = HfApi(endpoint=endpoint, token=token or False).model_info(repo_id, files_metadata=True, timeout=20)
    except (HfHubHTTPError, OfflineModeIsEnabled, httpx2.TransportError) as exc:
        raise translate(exc, repo_id) from exc
    files = [
        RemoteFile(s.rfilename, int(s.size or (s.lfs.size if s.lfs else 0)), s.lfs.sha256 if s.lfs else None)
        for s in info.siblings or []
        if safe_path(s.rfilename)  # a listing must never place files outside the model's folder
    ]
    from_tags = next((t[8:] for t in info.tags or [] if t.startswith("license:")), "")
    license_name = str(getattr(info.card_data, "license", None) or from_tags)
    commit = info.sha or ""
    options = group_options(files)
    header = None
    if options and not info.gated:  # a gated file needs the licence accepted first
        try:
            header = fetch_header(repo_id, commit, options[0].files[0], endpoint, token)
        except HubError as exc:  # the listing is still useful without fit estimates
            log.warning("No GGUF header for %s: %s", repo_id, exc)
    projectors = []
    if options:  # a repository of projectors alone offers nothing to pair them with
        described = [
            RemoteProjector(f) if info.gated else describe_projector(repo_id, commit, f, endpoint, token)
            for f in files
            if is_projector_name(f.path)
        ]
        key = options[0].first
        projectors = sorted(pairing(described, header), key=lambda p: projector_preference(key, p.name))
    return RemoteModel(repo_id, commit, bool(info.gated), license_name, options, header, endpoint, projectors)


def pairing(projectors: list[RemoteProjector], header: GgufInfo | None) -> list[RemoteProjector]:
    """The image projectors made for a model of this header (all that cannot be checked, when it is unknown).

    One Tern cannot use stays listed when it is for this model, so the user learns why images are not offered.
    """
    arch, width = text_shape(header.metadata) if header is not None else ("", 0)
    kept = []
    for projector in projectors:
        if projector.info is not None:
            try:
                if width:
                    projector.info.check_pairing(width, arch)
            except GgufError:
                continue
        elif projector.metadata is not None:
            fed = projector.metadata.get("clip.vision.projection_dim")
            if projector.metadata.get("clip.has_vision_encoder") is not True or (width and fed != width):
                continue  # no image encoder in it, or made for a model of another width
        kept.append(projector)
    return kept


HEADER_BYTES = (8_000_000, 32_000_000, 96_000_000)  # Gemma's 262k-token vocabulary makes ~6.5 MB
PROJECTOR_HEADER_BYTES = 1_000_000  # a projector's metadata has no vocabulary: a few KB


def _read_start(
    repo_id: str, commit: str, remote: RemoteFile, endpoint: str, token: str | None, data: bytearray, limit: int
) -> None:
    """Extend `data` with the file's bytes up to `limit` (a ranged GET; a server that ignores Range is cut off)."""
    url = hf_hub_url(repo_id, remote.path, revision=commit or None, endpoint=endpoint)
    headers = {**build_hf_headers(token=token or False), "Range": f"bytes={len(data)}-{limit - 1}"}
    try:
        with get_session().stream("GET", url, headers=headers, timeout=20) as response:
            hf_raise_for_status(response)
            if response.status_code == 200:  # Range ignored: this is the file from its start
                data.clear()
            for chunk in response.iter_bytes():
                data += chunk
                if len(data) >= limit:  # a server that ignores Range must not send us the whole model
                    break
    except (HfHubHTTPError, OfflineModeIsEnabled, httpx2.TransportError) as exc:
        raise translate(exc, repo_id) from exc


def fetch_header(repo_id: str, commit: str, remote: RemoteFile, endpoint: str, token: str | None) -> GgufInfo | None:
    """The GGUF header of a remote file from its first few MB (None if the file is not a usable GGUF)."""
    data = bytearray()
    for limit in HEADER_BYTES:
        limit = min(limit, remote.size)
        _read_start(repo_id, commit, remote, endpoint, token, data, limit)
        try:
            return read_gguf_header(bytes(data[:limit]), remote.path, remote.size)
        except HeaderTruncatedError:
            if limit >= remote.size:
                return None
        except GgufError:
            return None
    return None


def describe_projector(
    repo_id: str, commit: str, remote: RemoteFile, endpoint: str, token: str | None
) -> RemoteProjector:
    """A remote image projector, described from its first bytes (undescribed when they cannot be had or read).

    projector_info vets files on disk, so the header goes into a sparse stand-in of the projector's full size,
    named as the projector is (its messages name the file): the header's view of the tensors is then exact.
    """
    data = bytearray()
    try:
        _read_start(repo_id, commit, remote, endpoint, token, data, min(PROJECTOR_HEADER_BYTES, remote.size))
    except HubError as exc:  # the listing stays useful: the projector is offered without an estimate
        log.warning("No header for %s of %s: %s", remote.path, repo_id, exc)
        return RemoteProjector(remote)
    with tempfile.TemporaryDirectory(prefix="tern-mmproj-") as folder:
        stand_in = Path(folder) / remote.path.rsplit("/", 1)[-1]
        with stand_in.open("wb") as f:
            f.write(bytes(data))
            f.truncate(remote.size)
        try:
            metadata = read_metadata(stand_in)
        except GgufError as exc:
            return RemoteProjector(remote, problem=str(exc))
        try:
            return RemoteProjector(remote, metadata, read_projector_info(stand_in))
        except GgufError as exc:
            return RemoteProjector(remote, metadata, problem=str(exc))


def load_token() -> str | None:
    """The user's hub access token from the keychain, if any (never from settings or files)."""
    try:
        return keyring.get_password(APP_NAME, TOKEN_ACCOUNT) or None
    except keyring.errors.KeyringError:
        return None


def save_token(token: str | None) -> None:
    """Keep (or, with None, forget) the access token in the keychain; raises HubError without one."""
    try:
        if token:
            keyring.set_password(APP_NAME, TOKEN_ACCOUNT, token.strip())
        else:
            with contextlib.suppress(keyring.errors.PasswordDeleteError):
                keyring.delete_password(APP_NAME, TOKEN_ACCOUNT)
    except keyring.errors.KeyringError as exc:
        raise HubError(f"The system keychain could not store the token: {exc}") from exc
