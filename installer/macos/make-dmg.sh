#!/usr/bin/env bash
# Wrap the built Tern.app in a drag-to-Applications disk image (macOS only: needs hdiutil).
#   installer/macos/make-dmg.sh build/bundle/dist/Tern.app VERSION OUT_DIR
# PyInstaller signs the app ad hoc, which Apple Silicon requires to run it at all.
# A release for other people's Macs also needs a Developer ID signature and
# notarization (codesign --options runtime, xcrun notarytool); those take the
# maintainer's Apple credentials and are not part of this recipe.
set -euo pipefail
app=$1
version=$2
out=$3
[ "$(uname)" = Darwin ] || { echo "make-dmg: hdiutil is macOS-only" >&2; exit 2; }
staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R "$app" "$staging/Tern.app"
ln -s /Applications "$staging/Applications"
codesign --verify --deep "$staging/Tern.app"
dmg=$out/Tern-$version-macos-$(uname -m).dmg
hdiutil create -volname "Tern $version" -srcfolder "$staging" -fs HFS+ -format UDZO -ov "$dmg" >/dev/null
echo "$dmg"
