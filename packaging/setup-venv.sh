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
log=.venv/pip-install.log
echo "Installing Python packages into .venv (log: $log)..."
# llama-cpp-python compiles llama.cpp (about 10 minutes on 2 cores) the first
# time; pip caches the wheel, so later installs take seconds.
spec=.
[ "$extra" = dev ] && spec='.[dev]'
if ! { .venv/bin/python -m pip install --upgrade pip && .venv/bin/python -m pip install -e "$spec"; } >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup-venv: pip install failed; the whole log is in $log" >&2
    exit 1
fi
echo "$hash${extra:+ $extra}" > "$stamp"
