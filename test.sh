#!/usr/bin/env bash
# Set up everything the tests need, then run them headless: Qt's offscreen
# platform, and a private Secret Service (gnome-keyring on its own D-Bus) for keys.
set -euo pipefail
cd "$(dirname "$0")"
packaging/linux/system-deps.sh test
packaging/setup-venv.sh dev
.venv/bin/python tools/fetch_pdf_corpus.py  # broken PDFs from public test suites, pinned by hash
.venv/bin/python tools/fetch_real_docs.py  # real public documents for the extraction tests, pinned by hash
.venv/bin/python tools/fetch_gemma4_reference.py  # Gemma 4's real vocabulary and chat template, pinned by hash
export QT_QPA_PLATFORM=offscreen
exec dbus-run-session -- bash -c '
    keyring_home=$(mktemp -d)
    export XDG_DATA_HOME=$keyring_home  # the daemon keeps its keyrings here, not in your home
    eval "$(printf tern-tests | gnome-keyring-daemon --unlock --components=secrets)"
    export TERN_TEST_KEYRING=1
    status=0
    .venv/bin/python -m pytest "$@" || status=$?
    rm -rf "$keyring_home"
    exit $status
' test.sh "$@" 2> >(grep -v "Failed to set fd limit" >&2)
