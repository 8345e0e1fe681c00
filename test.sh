#!/usr/bin/env bash
# Set up everything the tests need, then run them headless (Qt's offscreen platform).
set -euo pipefail
cd "$(dirname "$0")"
packaging/linux/system-deps.sh test
packaging/setup-venv.sh dev
export QT_QPA_PLATFORM=offscreen
exec .venv/bin/python -m pytest "$@"
