#!/usr/bin/env bash
# Make tern_<version>_<arch>.deb from a built bundle; prints the .deb's path.
#   build-deb.sh BUNDLE_DIR VERSION OUT_DIR
# Tern goes to /opt/tern, with `tern` on PATH, a menu entry, icons, the GGUF file
# type and AppStream metadata. Its Depends are computed by dpkg-shlibdeps from
# every native library in the bundle (Qt's xcb platform plugin needs libxcb-cursor0
# and friends), so the system libraries it needs come with it.
set -euo pipefail
bundle=$(realpath "$1")
version=$2
out=$(realpath "$3")
cd "$(dirname "$0")/../.."
python=${PYTHON:-.venv/bin/python}  # one that can import app
id=app.tern.Tern
arch=$(dpkg --print-architecture)
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT

mkdir -p "$root/opt" "$root/usr/bin" "$root/DEBIAN"
cp -a "$bundle" "$root/opt/tern"
ln -s /opt/tern/Tern "$root/usr/bin/tern"
share=$root/usr/share
install -D -m 644 /dev/stdin "$share/applications/$id.desktop" \
    < <("$python" -c "from app.desktop_entry import desktop_entry; print(desktop_entry(['/opt/tern/Tern']), end='')")
install -D -m 644 resources/linux/$id-mime.xml "$share/mime/packages/$id.xml"
sed -e "s/@VERSION@/$version/" -e "s/@DATE@/$(date -u +%F)/" installer/linux/$id.metainfo.xml.in |
    install -D -m 644 /dev/stdin "$share/metainfo/$id.metainfo.xml"
cp -a "$bundle/share/icons" "$share/icons"
install -D -m 644 LICENSE "$share/doc/tern/copyright"

# Depends: the packages that provide the system libraries the bundle's binaries load.
work=$(mktemp -d)
mkdir -p "$work/debian"
printf 'Source: tern\n\nPackage: tern\nArchitecture: any\n' > "$work/debian/control"
mapfile -t elfs < <(find "$root/opt/tern" -type f \( -name '*.so*' -o -name Tern \) -exec sh -c 'head -c4 "$1" | grep -q ELF && echo "$1"' _ {} \;)
libdirs=$(find "$root/opt/tern" -type f -name '*.so*' -printf '%h\n' | sort -u | sed 's/^/-l/' | tr '\n' ' ')
# shellcheck disable=SC2086  # one -l option per folder
if ! (cd "$work" && dpkg-shlibdeps --ignore-missing-info -O $libdirs "${elfs[@]}") >"$work/substvars" 2>"$work/log"; then
    tail -n 20 "$work/log" >&2
    exit 1
fi
depends=$(sed -n 's/^shlibs:Depends=//p' "$work/substvars")
rm -rf "$work"
[ -n "$depends" ] || { echo "build-deb: dpkg-shlibdeps found no dependencies" >&2; exit 1; }

cat > "$root/DEBIAN/control" <<CONTROL
Package: tern
Version: $version
Architecture: $arch
Maintainer: Tern developers <tern@localhost>
Installed-Size: $(du -sk "$root/opt" "$root/usr" | awk '{s += $1} END {print s}')
Depends: $depends
Section: utils
Priority: optional
Description: private, offline AI assistant for Gemma models
 Tern runs Google's Gemma models entirely on this computer: no account, no
 cloud, no telemetry. Chat with streaming answers, keep an encrypted and
 searchable history, and ask questions about your own documents with citations.
 A small starter model is included, so it works from the first launch.
CONTROL
deb=$out/tern_${version}_$arch.deb
dpkg-deb --root-owner-group -Zgzip --build "$root" "$deb" >/dev/null
echo "$deb"
