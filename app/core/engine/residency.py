"""How much of a model file is resident in this process, and dropping parts of it.

llama.cpp maps the GGUF (in fragments: regions no tensor uses are unmapped).
A tensor's bytes are found by translating its file offset through the
fragment of `/proc/self/maps` that covers it; `/proc/self/pagemap` then says
page by page whether it is present in this process (bit 63).

Only Linux can tell here. Elsewhere the functions return None, and the UI
shows "n/a" rather than a guess.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

PAGE = mmap.PAGESIZE
_PRESENT = np.uint64(1) << np.uint64(63)
_MADV_RANDOM = 1
_MADV_DONTNEED = 4


@dataclass(frozen=True)
class _Fragment:
    start: int  # virtual address
    end: int
    file_offset: int


def _fragments(path: Path) -> list[_Fragment]:
    """The mappings of `path` in this process (matched by inode, then by device or path).

    Some filesystems (btrfs subvolumes) report a different device in maps than
    stat() does, so the resolved path also identifies the file.
    """
    try:
        st = os.stat(path)
        real = str(Path(path).resolve())
        lines = Path("/proc/self/maps").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        parts = line.split(maxsplit=5)
        if len(parts) < 6 or int(parts[4]) != st.st_ino:
            continue
        major, minor = (int(x, 16) for x in parts[3].split(":"))
        if os.makedev(major, minor) != st.st_dev and parts[5].strip() != real:
            continue
        start, end = (int(x, 16) for x in parts[0].split("-"))
        found.append(_Fragment(start, end, int(parts[2], 16)))
    return found


def _address_ranges(
    path: Path, offset: int, length: int, fragments: list[_Fragment] | None = None
) -> list[tuple[int, int, int]]:
    """(address, length, file offset) pieces where file bytes [offset, offset+length) are mapped."""
    pieces = []
    for frag in _fragments(path) if fragments is None else fragments:
        lo = max(offset, frag.file_offset)
        hi = min(offset + length, frag.file_offset + (frag.end - frag.start))
        if lo < hi:
            pieces.append((frag.start + (lo - frag.file_offset), hi - lo, lo))
    return pieces


def resident_bytes(path: str | os.PathLike[str], offset: int, length: int) -> int | None:
    """Bytes of file range [offset, offset+length) present in this process; None where unknowable."""
    if not sys.platform.startswith("linux"):
        return None
    fragments = _fragments(Path(path))
    if not fragments:
        return None  # not mapped at all: we cannot tell, rather than "0"
    pieces = _address_ranges(Path(path), offset, length, fragments)
    try:
        with open("/proc/self/pagemap", "rb", buffering=0) as pagemap:
            total = 0
            for address, n, _off in pieces:
                first, last = address // PAGE, (address + n - 1) // PAGE
                pagemap.seek(first * 8)
                raw = pagemap.read((last - first + 1) * 8)
                present = (np.frombuffer(raw, dtype=np.uint64) & _PRESENT) != 0
                count = int(present.sum())
                # Edge pages are shared with neighbouring tensors: count only our part of them.
                head = address - first * PAGE
                tail = (last + 1) * PAGE - (address + n)
                total += count * PAGE - (head if present[0] else 0) - (tail if present[-1] else 0)
            return total
    except OSError:
        return None


def evict_from_page_cache(path: str | os.PathLike[str], offset: int, length: int) -> None:
    """Ask the kernel to forget cached pages of a file range (pages mapped somewhere stay)."""
    if not hasattr(os, "posix_fadvise"):
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def drop_resident(path: str | os.PathLike[str], offset: int, length: int) -> bool:
    """Page one mapped file range out of this process; see `drop_resident_ranges`."""
    return drop_resident_ranges(path, [(offset, length)])


def drop_resident_ranges(path: str | os.PathLike[str], ranges: list[tuple[int, int]]) -> bool:
    """Page mapped file ranges out of this process (unlocking them first) and evict them from the page cache.

    The mapping stays valid: a later read faults just that page back in from
    disk (MADV_RANDOM: no readahead around it). Used for the PLE table after
    load, and for the mapped sources of tensors llama.cpp repacked.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.munlock.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    dropped = False
    fragments = _fragments(Path(path))
    pieces = [p for offset, length in ranges for p in _address_ranges(Path(path), offset, length, fragments)]
    for address, n, _file_offset in pieces:
        # Edge pages shared with a neighbour go too: a clean file page simply faults back in.
        start = address // PAGE * PAGE
        end = -(-(address + n) // PAGE) * PAGE
        if end <= start:
            continue
        libc.munlock(start, end - start)  # a locked model's mapping covers the PLE too
        if libc.madvise(start, end - start, _MADV_DONTNEED) == 0:
            libc.madvise(start, end - start, _MADV_RANDOM)
            dropped = True
    if dropped:
        for offset, length in ranges:
            evict_from_page_cache(path, offset, length)
    return dropped


@dataclass(frozen=True)
class ProcessMemory:
    """Resident memory of this process, split by kind (bytes)."""

    rss_file: int
    rss_anon: int
    peak_rss: int


def process_memory() -> ProcessMemory | None:
    """From /proc/self/status on Linux; None elsewhere."""
    try:
        fields = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    except OSError:
        return None

    def kib(key: str) -> int:
        return int(fields.get(key, "0 kB").split()[0]) * 1024

    return ProcessMemory(kib("RssFile") + kib("RssShmem"), kib("RssAnon"), kib("VmHWM"))
