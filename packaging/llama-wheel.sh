#!/usr/bin/env bash
# Build (once) llama-cpp-python as Tern needs it, and print the wheel's path.
#   llama-wheel.sh native    for the developer venv: compiled for this machine's CPU
#   llama-wheel.sh portable  for the bundle: runs on any CPU of this architecture
#
# pip keys its wheel cache by the source, not by CMAKE_ARGS or the CPU, so
# through it a portable build would pick up the native wheel (or leave itself
# where the venv would find it), and a native wheel built on one CPU would be
# reused on another. So pip's cache is bypassed, and each wheel is kept in a
# cache of its own (beside pip's, so what keeps pip's cache keeps this), keyed
# by the version, the flags and, for a native build, the CPU.
#
# Portable: llama.cpp's CPU code is built once per x86-64 level (or ARM feature
# set) as its own library, next to libllama, and ggml loads the best one for
# the CPU it runs on (GGML_BACKEND_DL, GGML_CPU_ALL_VARIANTS).
#
# Both leave out Intel AMX: llama.cpp's AMX matrix code crashes (SIGSEGV in
# ggml_backend_amx_mul_mat) on Sapphire Rapids, this machine's kind among them.
# A native build is told not to use it; the bundle leaves the one variant that
# has it out (packaging/tern.spec).
set -euo pipefail
cd "$(dirname "$0")/.."
flavour=${1:?usage: llama-wheel.sh native|portable}
python=${PYTHON:-.venv/bin/python}  # a Python with pip (Debian's python3 may have none)
version=$(sed -n 's/.*"llama-cpp-python==\([^"]*\)".*/\1/p' pyproject.toml)
cflags=""
case "$flavour" in
    native)
        flags="-DGGML_NATIVE=ON"
        cpu=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || sysctl -n machdep.cpu.features 2>/dev/null || uname -m)
        if grep -qw amx_int8 <<<"$cpu"; then cflags="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"; fi
        ;;
    portable)
        flags="-DGGML_NATIVE=OFF -DGGML_BACKEND_DL=ON -DGGML_CPU_ALL_VARIANTS=ON -DCMAKE_INSTALL_BINDIR=llama_cpp/lib"
        cpu=$(uname -m)
        ;;
    *) echo "usage: llama-wheel.sh native|portable" >&2; exit 2 ;;
esac
platform=$("$python" -c 'import sys; print(sys.platform)')
key=$(printf '%s\n' "$version" "$flags" "$cflags" "$platform" "$cpu" | sha256sum | cut -c1-16)
root=${TERN_BUILD_CACHE:-$("$python" -m pip cache dir 2>/dev/null || echo "${XDG_CACHE_HOME:-$HOME/.cache}/pip")/tern-llama}
cache=$root/$flavour-$key
wheel=$(ls "$cache"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -n 1 || true)
if [ -n "$wheel" ]; then
    echo "$wheel"
    exit 0
fi
mkdir -p "$cache"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log=$cache/build.log
echo "llama-wheel: building llama-cpp-python $version ($flavour; about 10 minutes native, 20 portable, on 2 cores; log: $log)..." >&2
started=$(date +%s)
if ! CMAKE_ARGS="$flags" CFLAGS="$cflags" CXXFLAGS="$cflags" CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
        "$python" -m pip wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
        "llama-cpp-python==$version" -w "$work" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "llama-wheel: the build failed; the whole log is in $log" >&2
    exit 1
fi
mv "$work"/llama_cpp_python-*.whl "$cache"/
echo "llama-wheel: $flavour build took $(( $(date +%s) - started )) s" >&2
ls "$cache"/llama_cpp_python-"$version"-*.whl
