"""Tern's downloader against the loopback hub: the real huggingface_hub client behind Tern's network gate.

Covers a full download, a connection dropped at 40 % (clean close and TCP
reset), a corrupted byte, a gated repo, a stalled server, a full disk (a real
tmpfs), a missing repo, no network, DNS failure, and split models as a unit.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from app.core.models import download as dl
from app.core.models.download import DownloadError, DownloadJob, Progress, run_job
from app.core.models.hub import (
    HubError,
    HubUnreachableError,
    RemoteFile,
    fetch_model,
    group_options,
    hub_name,
    parse_repo_ref,
)
from app.core.models.names import quant_label
from app.core.models.network import ACTIVITY, NoAnswer, online, why_no_answer
from app.core.models.registry import inspect
from tests.fixtures.hub import GATED_NAME, GATED_REPO, PUBLIC_REPO, SPLIT_NAMES, SPLIT_REPO, STARTER_NAME
from tests.fixtures.hub_server import Fault, HubServer


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def job_for(server: HubServer, repo: str, dest: Path, label: str | None = None) -> DownloadJob:
    with online("test: list files"):
        remote = fetch_model(repo, server.endpoint)
    option = next(o for o in remote.options if label is None or o.label == label)
    server.clear_requests()  # the listing read the first MB of a file, for its header
    return DownloadJob.for_option(repo, remote.commit, option, dest, server.endpoint)


def run(job: DownloadJob, token: str | None = None, stall_s: float = 5.0) -> tuple[list[Path], list[Progress]]:
    seen: list[Progress] = []
    paths = run_job(job, threading.Event(), seen.append, token, stall_s)
    return paths, seen


@pytest.fixture
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after 0.1 s instead of seconds, so fault tests stay quick (the logic is the same)."""
    monkeypatch.setattr(dl, "BACKOFF_S", (0.1, 0.1, 0.1, 0.1))


def test_listing_groups_gguf_files_by_quantization(hub_server: HubServer) -> None:
    with online("test"):
        remote = fetch_model(PUBLIC_REPO, hub_server.endpoint)
    assert remote.commit == hub_server.commit(PUBLIC_REPO)
    assert remote.header is not None and remote.header.family.startswith("Gemma 3")  # from a ranged read
    header_reads = hub_server.requests_for(STARTER_NAME)
    assert [r.range_header for r in header_reads] == ["bytes=0-7999999"]  # 8 MB, not the 253 MB model
    assert [(o.label, o.first) for o in remote.options] == [("Q4_K_M", STARTER_NAME)]  # README left out
    option = remote.options[0]
    assert option.size == hub_server.blob(PUBLIC_REPO, STARTER_NAME).size
    assert option.files[0].sha256 == hub_server.blob(PUBLIC_REPO, STARTER_NAME).sha256
    with online("test"):
        split = fetch_model(SPLIT_REPO, hub_server.endpoint)
    assert [len(o.files) for o in split.options] == [2]  # two parts, one model


def test_names_and_references() -> None:
    assert quant_label("gemma-4-E2B-it-Q4_K_M.gguf") == "Q4_K_M"
    assert quant_label("google_gemma-4-E2B-it-IQ4_XS.gguf") == "IQ4_XS"
    assert quant_label("gemma-4-E2B-it-UD-Q4_K_XL.gguf") == "UD-Q4_K_XL"
    assert quant_label("gemma-4-e2b-it-q4_0.gguf") == "Q4_0"
    assert quant_label("model-bf16-00001-of-00003.gguf") == "BF16"
    assert parse_repo_ref("https://huggingface.co/ggml-org/gemma-4-E2B-it-GGUF/blob/main/x.gguf") == (
        "ggml-org/gemma-4-E2B-it-GGUF"
    )
    assert parse_repo_ref(" unsloth/gemma-3n-E2B-it-GGUF ") == "unsloth/gemma-3n-E2B-it-GGUF"
    with pytest.raises(HubError, match="not a Hugging Face model id"):
        parse_repo_ref("just words")
    incomplete = [RemoteFile("m-00001-of-00003.gguf", 1, None), RemoteFile("mmproj-F16.gguf", 1, None)]
    assert group_options(incomplete) == []  # a split set missing parts, and a projector, are not offered


def test_full_download_is_verified_and_installed(hub_server: HubServer, tmp_path: Path) -> None:
    job = job_for(hub_server, PUBLIC_REPO, tmp_path)
    paths, progress = run(job)
    assert paths == [tmp_path / PUBLIC_REPO / STARTER_NAME]
    assert sha256(paths[0]) == hub_server.blob(PUBLIC_REPO, STARTER_NAME).sha256
    assert not list(tmp_path.rglob("*.part"))
    assert progress[-1].done == progress[-1].total == job.total
    assert inspect(paths[0]).family.startswith("Gemma 3")
    reasons = {a.reason for a in ACTIVITY.snapshot()}
    assert f"Download {PUBLIC_REPO} Q4_K_M" in reasons  # every request is in the network log


@pytest.mark.parametrize("reset", [False, True], ids=["closed", "reset"])
def test_a_dropped_connection_resumes_with_a_range_request(
    hub_server: HubServer, tmp_path: Path, fast_backoff: None, reset: bool
) -> None:
    job = job_for(hub_server, PUBLIC_REPO, tmp_path)
    hub_server.faults[STARTER_NAME] = Fault(drop_at=0.4, reset=reset)
    paths, _ = run(job)
    assert sha256(paths[0]) == hub_server.blob(PUBLIC_REPO, STARTER_NAME).sha256
    gets = hub_server.requests_for(STARTER_NAME)
    assert len(gets) == 2 and gets[0].range_header is None
    resumed_at = int(gets[1].range_header.removeprefix("bytes=").rstrip("-"))  # type: ignore[union-attr]
    assert 0.3 * job.total < resumed_at <= 0.4 * job.total  # continued, not restarted


def test_a_corrupted_byte_is_rejected_and_deleted(hub_server: HubServer, tmp_path: Path) -> None:
    job = job_for(hub_server, GATED_REPO, tmp_path)
    hub_server.faults[GATED_NAME] = Fault(corrupt_at=1_000_000)
    with pytest.raises(DownloadError, match="damaged"):
        run(job, token=hub_server.valid_token)
    assert not list((tmp_path / GATED_REPO).iterdir())  # no .part, nothing installed
    paths, _ = run(job, token=hub_server.valid_token)  # the offered retry works
    assert sha256(paths[0]) == hub_server.blob(GATED_REPO, GATED_NAME).sha256


def test_a_gated_repo_asks_for_the_licence_and_a_token(hub_server: HubServer, tmp_path: Path) -> None:
    job = job_for(hub_server, GATED_REPO, tmp_path)
    with pytest.raises(DownloadError, match=r"accept its licence.*access token"):
        run(job)
    assert not (tmp_path / GATED_REPO / GATED_NAME).exists()
    paths, _ = run(job, token=hub_server.valid_token)
    assert paths[0].exists()


def test_a_stalled_server_is_detected_and_the_download_retried(
    hub_server: HubServer, tmp_path: Path, fast_backoff: None
) -> None:
    job = job_for(hub_server, GATED_REPO, tmp_path)
    hub_server.faults[GATED_NAME] = Fault(stall_after=3_000_000, stall_s=30)
    started = time.monotonic()
    paths, _ = run(job, token=hub_server.valid_token, stall_s=0.5)
    assert time.monotonic() - started < 10  # not the 30 s the server sat silent
    assert sha256(paths[0]) == hub_server.blob(GATED_REPO, GATED_NAME).sha256
    assert hub_server.requests_for(GATED_NAME)[-1].range_header == "bytes=3000000-"


def test_a_server_error_is_retried_then_reported(hub_server: HubServer, tmp_path: Path, fast_backoff: None) -> None:
    job = job_for(hub_server, GATED_REPO, tmp_path)
    hub_server.faults[GATED_NAME] = Fault(status=503, times=2)
    paths, _ = run(job, token=hub_server.valid_token)  # two 503s, then it works
    assert paths[0].exists()
    job2 = job_for(hub_server, SPLIT_REPO, tmp_path / "again")
    hub_server.faults[SPLIT_NAMES[0]] = Fault(status=503, times=99)
    with pytest.raises(DownloadError, match="keeps failing: the hub answered 503"):
        run(job2)


def test_split_models_are_installed_only_as_a_whole(hub_server: HubServer, tmp_path: Path) -> None:
    job = job_for(hub_server, SPLIT_REPO, tmp_path)
    hub_server.faults[SPLIT_NAMES[1]] = Fault(corrupt_at=10)
    with pytest.raises(DownloadError, match="damaged"):
        run(job)
    folder = tmp_path / SPLIT_REPO
    assert sorted(p.name for p in folder.iterdir()) == [SPLIT_NAMES[0] + ".part"]  # verified, not yet usable
    paths, _ = run(job)
    assert [p.name for p in paths] == list(SPLIT_NAMES)
    assert all(sha256(p) == hub_server.blob(SPLIT_REPO, p.name).sha256 for p in paths)


def test_a_file_gone_from_the_hub_is_reported(hub_server: HubServer, tmp_path: Path) -> None:
    job = job_for(hub_server, PUBLIC_REPO, tmp_path)
    job.files[0].path = "gemma-3-270m-Q2_K.gguf"  # listed earlier, removed since
    with pytest.raises(DownloadError, match="no longer on the hub"):
        run(job)


def test_missing_repo_no_network_and_dns_failure_have_clear_messages(hub_server: HubServer, tmp_path: Path) -> None:
    with online("test"), pytest.raises(HubError, match="no model nobody/nothing"):
        fetch_model("nobody/nothing", hub_server.endpoint)
    with online("test"), pytest.raises(HubUnreachableError) as refused:
        fetch_model(PUBLIC_REPO, "http://127.0.0.1:9")  # nothing listens: like a machine without network
    assert str(refused.value).startswith("Tern could not reach the hub at 127.0.0.1: the connection was refused.")
    with online("test"), pytest.raises(HubUnreachableError) as no_name:
        fetch_model(PUBLIC_REPO, "http://hub.tern-test.invalid")
    message = str(no_name.value)
    assert message.startswith("Tern could not reach the hub at hub.tern-test.invalid: its address could not be found")
    assert "This computer may be offline" in message and "“Import a GGUF file…”" in message  # what to do instead
    assert "Errno" not in message and "Error" not in message
    with pytest.raises(HubError, match="offline"):
        fetch_model(PUBLIC_REPO, hub_server.endpoint)  # no user action: the gate refuses
    answers = {a.url.split("/api/")[0]: a.answer() for a in ACTIVITY.snapshot()}
    assert answers["http://127.0.0.1:9"] == "No answer: connection refused"  # the network log says why
    assert answers["http://hub.tern-test.invalid"] == "No answer: address not found (DNS)"


def test_the_hub_is_named_as_the_user_knows_it() -> None:
    assert hub_name("https://huggingface.co") == "Hugging Face"
    assert hub_name("https://hf-mirror.example.com/") == "the hub at hf-mirror.example.com"


def test_why_a_request_had_no_answer() -> None:
    timeout = httpx2.ConnectTimeout("timed out")
    assert why_no_answer(timeout) == NoAnswer.TIMED_OUT
    offline = httpx2.ConnectError("[Errno 101] Network is unreachable")
    offline.__cause__ = OSError(errno.ENETUNREACH, "Network is unreachable")
    assert why_no_answer(offline) == NoAnswer.OFFLINE
    dns = httpx2.ConnectError("[Errno -3] Temporary failure in name resolution")
    dns.__cause__ = socket.gaierror(-3, "Temporary failure in name resolution")
    assert why_no_answer(dns) == NoAnswer.DNS
    assert why_no_answer(httpx2.ConnectError("something else")) == NoAnswer.FAILED


@contextlib.contextmanager
def small_disk(path: Path, size: str) -> Iterator[Path]:
    """A real size-limited filesystem (tmpfs) mounted at `path`."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a tmpfs needs root here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_a_full_disk_is_refused_before_starting_and_reported_during(
    hub_server: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with small_disk(tmp_path / "tiny-disk", "8m") as disk:
        job = job_for(hub_server, GATED_REPO, disk)
        with pytest.raises(
            DownloadError, match=r"Not enough disk space: Q8_0 needs 1\d\.\d MB more, and 8\.\d MB is free"
        ):
            run(job, token=hub_server.valid_token)
        assert not list(disk.rglob("*.part"))

    monkeypatch.setattr(dl, "DISK_MARGIN", 0)  # the check passes; then something else fills the disk
    with small_disk(tmp_path / "filling-disk", "20m") as disk:
        job = job_for(hub_server, GATED_REPO, disk)
        hub_server.faults[GATED_NAME] = Fault(rate=8_000_000)
        filler = disk / "other-program.bin"

        def fill() -> None:
            time.sleep(0.5)
            with contextlib.suppress(OSError), filler.open("wb") as f:
                while True:
                    f.write(b"\0" * 1_000_000)

        thread = threading.Thread(target=fill)
        thread.start()
        with pytest.raises(DownloadError, match="disk filled up"):
            run(job, token=hub_server.valid_token)
        thread.join()
        part = job.part(job.files[0])
        assert 0 < part.stat().st_size < job.total  # what arrived is kept for the resume
        filler.unlink()
        paths, _ = run(job, token=hub_server.valid_token)
        assert sha256(paths[0]) == hub_server.blob(GATED_REPO, GATED_NAME).sha256


def test_hostile_names_never_leave_the_models_folder(tmp_path: Path, hub_repos: dict[str, dict[str, Path]]) -> None:
    tiny = hub_repos[GATED_REPO][GATED_NAME]
    hostile = {"evil/names-GGUF": {"/tmp/abs-Q8_0.gguf": tiny, "../../up-Q8_0.gguf": tiny, "ok-Q8_0.gguf": tiny}}
    with HubServer(hostile) as server, online("test"):
        remote = fetch_model("evil/names-GGUF", server.endpoint)
    assert [o.first for o in remote.options] == ["ok-Q8_0.gguf"]  # the others are not even offered
    job = DownloadJob("evil/names-GGUF", "", "Q8_0", [dl.JobFile("../../up-Q8_0.gguf", 10, None)], str(tmp_path / "m"))
    with pytest.raises(DownloadError, match="outside the model's folder"):
        job.target(job.files[0])  # a tampered queue file is refused too
    for bad in ("../..", "org/name--x", "org/x..", "a/b/c"):
        with pytest.raises(HubError, match="not a Hugging Face model id"):
            parse_repo_ref(bad)


def test_an_existing_file_is_trusted_only_if_its_hash_matches(hub_server: HubServer, tmp_path: Path) -> None:
    job = job_for(hub_server, GATED_REPO, tmp_path)
    target = job.target(job.files[0])
    target.parent.mkdir(parents=True)
    target.write_bytes(b"B" * job.files[0].size)  # right size, wrong content
    paths, _ = run(job, token=hub_server.valid_token)
    assert sha256(paths[0]) == hub_server.blob(GATED_REPO, GATED_NAME).sha256


def test_an_unreadable_queue_is_kept_aside(tmp_path: Path) -> None:
    queue = tmp_path / "downloads.json"
    for content in ('{"a": 1}', "[1]", "not json"):
        queue.write_text(content)
        assert dl.load_queue(queue) == []
        assert (tmp_path / "downloads.json.unreadable").read_text() == content
