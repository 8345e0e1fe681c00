#!/usr/bin/env bash
# Set up everything Tern needs (first run: system packages and a ~10 minute build), then start it.
set -euo pipefail
cd "$(dirname "$0")"
packaging/linux/system-deps.sh app
packaging/setup-venv.sh
exec .venv/bin/tern "$@"
