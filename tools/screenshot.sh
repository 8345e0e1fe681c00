#!/usr/bin/env bash
# Run tools/screenshot.py (or, with --models, --documents, --api, --tools or --vision, models_screenshot.py,
# documents_screenshot.py, api_screenshot.py, tools_screenshot.py or vision_screenshot.py)
# with an X server and a private Secret Service. TERN_SCREEN sets the X screen (default 1280x800x24);
# QT_SCALE_FACTOR, if set, scales the app as a high-density display would.
set -euo pipefail
cd "$(dirname "$0")/.."
exec dbus-run-session -- bash -c '
    export XDG_DATA_HOME=$(mktemp -d)  # the keyring daemon keeps its throwaway keyring here
    eval "$(printf tern | gnome-keyring-daemon --unlock --components=secrets)"
    script=tools/screenshot.py
    if [ "${1:-}" = "--models" ]; then script=tools/models_screenshot.py; shift; fi
    if [ "${1:-}" = "--documents" ]; then script=tools/documents_screenshot.py; shift; fi
    if [ "${1:-}" = "--api" ]; then script=tools/api_screenshot.py; shift; fi
    if [ "${1:-}" = "--tools" ]; then script=tools/tools_screenshot.py; shift; fi
    if [ "${1:-}" = "--vision" ]; then script=tools/vision_screenshot.py; shift; fi
    xvfb-run -a -s "-screen 0 ${TERN_SCREEN:-1280x800x24}" .venv/bin/python "$script" "$@"
' screenshot.sh "$@" 2> >(grep -v "Failed to set fd limit" >&2)
