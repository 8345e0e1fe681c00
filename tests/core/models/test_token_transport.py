"""The access token never travels unencrypted: every request that carries it passes one check.

A second hub listens on another of this machine's own addresses, so it is a
plain-http mirror "elsewhere" that the test can still watch: each path that can
carry the token (the listing, the header read, a download, a redirect) must
refuse to send it there, and that hub must never see it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.models.download import DownloadError, DownloadJob, run_job
from app.core.models.hub import HubError, fetch_header, fetch_model
from app.core.models.network import may_carry_token, online
from tests.fixtures.hub import GATED_NAME, GATED_REPO, PUBLIC_REPO
from tests.fixtures.hub_server import HubServer


def lan_address() -> str | None:
    """This machine's non-loopback address (a UDP connect picks the route; no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: only the routing table is consulted
        except OSError:
            return None
        address = str(probe.getsockname()[0])
    return None if ipaddress.ip_address(address).is_loopback else address


@pytest.fixture
def mirror(hub_repos: dict[str, dict[str, Path]]) -> Iterator[HubServer]:
    """A plain-http hub on a non-loopback address of this machine."""
    address = lan_address()
    if address is None:
        pytest.skip("this machine has no non-loopback address to serve a plain-http mirror on")
    with HubServer(hub_repos, gated={GATED_REPO}, host=address) as server:
        yield server


def saw_token(server: HubServer) -> bool:
    return any("Authorization" in r.headers or "authorization" in r.headers for r in server.requests)


def test_the_rule() -> None:
    assert may_carry_token("https://huggingface.co") and may_carry_token("https://mirror.example:8443/x")
    assert may_carry_token("http://127.0.0.1:8080") and may_carry_token("http://localhost:1")
    assert may_carry_token("http://[::1]:8080")
    assert not may_carry_token("http://mirror.example") and not may_carry_token("http://10.1.2.3:80")
    assert not may_carry_token("ftp://127.0.0.1/") and not may_carry_token("not a url ::")


def test_listing_refuses_to_send_the_token_to_a_plain_http_mirror(mirror: HubServer) -> None:
    with online("test: list files"), pytest.raises(HubError, match="was not sent"):
        fetch_model(GATED_REPO, mirror.endpoint, token=mirror.valid_token)
    assert mirror.requests == []  # refused before anything left
    with online("test: list files"):
        public = fetch_model(PUBLIC_REPO, mirror.endpoint)  # without a token, plain http is the user's choice
    assert public.options and not saw_token(mirror)


def test_the_header_read_and_a_download_refuse_it_too(hub_server: HubServer, mirror: HubServer, tmp_path: Path) -> None:
    with online("test: list files"):  # the same repositories, listed over loopback
        remote = fetch_model(GATED_REPO, hub_server.endpoint, token=hub_server.valid_token)
    option = remote.options[0]
    with online("test: header"), pytest.raises(HubError, match="was not sent"):
        fetch_header(GATED_REPO, remote.commit, option.files[0], mirror.endpoint, mirror.valid_token)
    job = DownloadJob.for_option(GATED_REPO, remote.commit, option, tmp_path, mirror.endpoint)
    with pytest.raises(DownloadError, match="was not sent"):
        run_job(job, threading.Event(), lambda _p: None, mirror.valid_token, 5.0)
    assert not saw_token(mirror) and not list(tmp_path.rglob("*.gguf"))


def test_a_redirect_to_a_plain_http_host_never_carries_it(
    hub_server: HubServer, mirror: HubServer, tmp_path: Path
) -> None:
    with online("test: list files"):
        remote = fetch_model(GATED_REPO, hub_server.endpoint, token=hub_server.valid_token)
    job = DownloadJob.for_option(GATED_REPO, remote.commit, remote.options[0], tmp_path, hub_server.endpoint)
    hub_server.redirect_to = mirror.endpoint  # loopback (allowed) sends the download elsewhere over plain http
    with pytest.raises(DownloadError):
        run_job(job, threading.Event(), lambda _p: None, hub_server.valid_token, 5.0)
    assert mirror.requests_for(GATED_NAME)  # the redirect was followed ...
    assert not saw_token(mirror)  # ... without the token
