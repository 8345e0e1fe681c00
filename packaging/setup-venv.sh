#!/usr/bin/env bash
# Create or update .venv from pyproject.toml (idempotent: skips pip when nothing changed).
#   setup-venv.sh        - the app
#   setup-venv.sh dev    - the app plus test and lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python=${PYTHON:-python3}

if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
log=.venv/pip-install.log
if [ ! -f .venv/.pip-upgraded ]; then
    .venv/bin/python -m pip install --upgrade pip >"$log" 2>&1 && touch .venv/.pip-upgraded
fi
# llama.cpp is compiled for this CPU (about 10 minutes on 2 cores, once: the wheel is cached).
llama=$(PYTHON=.venv/bin/python packaging/llama-wheel.sh native)
stamp=.venv/.tern-installed
hash=$(cat pyproject.toml <(echo "$llama") | sha256sum | cut -d' ' -f1)
# Up to date when the stamp has this pyproject's (and wheel's) hash, and "dev" if dev tools are wanted.
if [ -f "$stamp" ] && grep -qx "$hash${extra:+ $extra}.*" "$stamp"; then
    exit 0
fi
echo "Installing Python packages into .venv (log: $log)..."
spec=.
[ "$extra" = dev ] && spec='.[dev]'
# --force-reinstall: an earlier llama-cpp-python of the same version may be a build for another CPU.
if ! { .venv/bin/python -m pip install --no-deps --force-reinstall "$llama" &&
       .venv/bin/python -m pip install "$llama" -e "$spec"; } >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "setup-venv: pip install failed; the whole log is in $log" >&2
    exit 1
fi
echo "$hash${extra:+ $extra}" > "$stamp"
