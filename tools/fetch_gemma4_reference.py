"""Fetch Gemma 4's real vocabulary and chat templates, which the Gemma 4 tests and test models use.

    python tools/fetch_gemma4_reference.py [--dest DIR]

They come out of the llama-cpp-python source distribution that Tern builds
from (pinned below by version and SHA-256), downloaded with pip from the
package index pip is configured with:

- `ggml-vocab-gemma-4.gguf`: a vocabulary-only GGUF (tokenizer model `gemma4`,
  262,144 tokens and their merges, and the chat template of its release);
- `google-gemma-4-31B-it.jinja`: the current Gemma 4 instruction-tuned chat
  template (system role, thinking, tool declarations, calls and responses).

They are kept under DIR (default: $TERN_REFERENCE, else
$XDG_CACHE_HOME/tern-reference, else ~/.cache/tern-reference). A run that finds
them in place with the right hashes downloads nothing. The tests only read
them; test.sh runs this first.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script, it finds tools/

from tools.fetching import cache_dir, sha256

PACKAGE, VERSION = "llama-cpp-python", "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
_VENDOR = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
FILES = {  # name kept under DIR: (path in the sdist, SHA-256)
    "ggml-vocab-gemma-4.gguf": (
        _VENDOR + "models/ggml-vocab-gemma-4.gguf",
        "58b1ba0b57f3b4d7c468ba4ffd91ad85190346a3d7ad7e71d1cabaae8a14bb65",
    ),
    "google-gemma-4-31B-it.jinja": (
        _VENDOR + "models/templates/google-gemma-4-31B-it.jinja",
        "85a08664d16d8f3be4416c92427b3ac10df1024ac566cc0b4bc3bab409393f98",
    ),
}
VOCAB, TEMPLATE = FILES


def reference_dir() -> Path:
    """Where the files live: $TERN_REFERENCE, else the user's cache folder."""
    return cache_dir("TERN_REFERENCE", "tern-reference")


def missing(dest: Path) -> list[str]:
    """The files that are not in `dest` with their pinned hash."""
    return [name for name, (_, digest) in FILES.items() if not (dest / name).is_file() or sha256(dest / name) != digest]


def fetch(dest: Path) -> None:
    """Download the pinned sdist with pip and copy the files out of it (nothing when all are in place)."""
    if not missing(dest):
        return
    print(f"fetch_gemma4_reference: fetching {PACKAGE} {VERSION} (source)", file=sys.stderr)
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="tern-reference-") as tmp:
        command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                   "--dest", tmp, f"{PACKAGE}=={VERSION}"]  # fmt: skip
        if subprocess.run(command, check=False).returncode != 0:
            raise SystemExit(f"fetch_gemma4_reference: pip could not download {PACKAGE} {VERSION}")
        archive = Path(tmp) / SDIST
        if not archive.is_file() or sha256(archive) != SDIST_SHA256:
            raise SystemExit(f"fetch_gemma4_reference: {SDIST} is missing or differs from its pinned SHA-256")
        wanted = {path: name for name, (path, _) in FILES.items()}
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar.getmembers():
                name = wanted.get(member.name)
                data = tar.extractfile(member) if name and member.isfile() else None
                if name is None or data is None:
                    continue
                partial = dest / f"{name}.part"
                with data, partial.open("wb") as out:
                    out.write(data.read())
                partial.replace(dest / name)
    if bad := missing(dest):
        raise SystemExit(f"fetch_gemma4_reference: not as pinned after fetching: {', '.join(bad)}")


def paths(dest: Path | None = None) -> dict[str, Path]:
    """The files, checked against their hashes (never fetched here: tests stay offline)."""
    dest = dest or reference_dir()
    if bad := missing(dest):
        raise FileNotFoundError(
            f"Gemma 4 reference files missing in {dest}: {', '.join(bad)}; run tools/fetch_gemma4_reference.py"
        )
    return {name: dest / name for name in FILES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dest", type=Path, default=None)
    args = parser.parse_args()
    dest = args.dest or reference_dir()
    fetch(dest)
    print(dest)


if __name__ == "__main__":
    main()
