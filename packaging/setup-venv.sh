#!/usr/bin/env bash
# Create or update .venv from pyproject.toml (idempotent: skips pip when nothing changed).
#   setup-venv.sh        - the app
#   setup-venv.sh dev    - the app plus test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python=${PYTHON:-python3}
stamp=.venv/.tern-installed
hash=$(sha256sum pyproject.toml | cut -d' ' -f1)

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
# Up to date when the stamp has this pyproject's hash (and "dev" if dev tools are wanted).
if [ -f "$stamp" ] && grep -qx "$hash${extra:+ $extra}.*" "$stamp"; then
    exit 0
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# llama-cpp-python compiles llama.cpp (about 10 minutes on 2 cores) the first
# time; pip caches the wheel, so later installs take seconds.
if [ "$extra" = dev ]; then
    .venv/bin/python -m pip install --quiet -e '.[dev]'
else
    .venv/bin/python -m pip install --quiet -e .
fi
echo "$hash${extra:+ $extra}" > "$stamp"
