#!/usr/bin/env bash
# Install the Debian/Ubuntu packages Tern needs, only those missing.
#   system-deps.sh app   - to build and show the app on an X11/Wayland desktop
#   system-deps.sh test  - to build and run the test suite headless
#   system-deps.sh bundle - to build the bundle, its .deb and installers, and smoke-test them
set -euo pipefail
mode=${1:-app}

if ! command -v dpkg-query >/dev/null 2>&1 || ! command -v apt-get >/dev/null 2>&1; then
    echo "system-deps: not a Debian-like system; install a C++ toolchain, CMake and Python 3.10+ yourself." >&2
    exit 0
fi

# Python, a compiler for llama-cpp-python, and the libraries Qt loads.
common="python3 python3-venv python3-dev build-essential cmake git
        libegl1 libgl1 libopengl0 libxkbcommon0 libfontconfig1 libdbus-1-3 libglib2.0-0 fonts-dejavu-core"
# Qt's xcb platform plugin.
desktop="libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0
         libxcb-render-util0 libxcb-image0 libxcb-xkb1 libxcb-xinerama0"
case "$mode" in
    app) wanted="$common $desktop" ;;
    test) wanted="$common dbus gnome-keyring" ;;  # a real Secret Service for the key tests
    # dpkg-shlibdeps, the desktop-entry and AppStream validators, makensis for the Windows
    # installer script, and strace to watch the frozen app for network access.
    # Qt's xcb libraries too, so dpkg-shlibdeps can name the packages that provide them.
    bundle) wanted="$common $desktop dbus gnome-keyring dpkg-dev desktop-file-utils appstream nsis strace" ;;
    *) echo "usage: $0 app|test|bundle" >&2; exit 2 ;;
esac

missing=()
for pkg in $wanted; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "system-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
