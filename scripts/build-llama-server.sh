#!/usr/bin/env bash
# Build llama.cpp's llama-server into .venv/bin: the embedded model server (bot/embedded.py).
#
# The source is the llama.cpp vendored in llama-cpp-python's sdist, fetched through pip
# (so a pinned, released llama.cpp from the package index, with pip's own settings), and
# only the server is compiled: no Python bindings, no web UI (nothing downloaded at build
# time), no TLS. Skipped when the installed binary was built from this same pin and flags.
#
# Not built for this CPU (-march=native) but for llama.cpp's portable x86-64 baseline (AVX2,
# FMA, F16C; other architectures: their defaults): a binary built on one machine runs on
# another (the Docker image), and ggml's AMX kernels, which a native build turns on for
# Sapphire Rapids CPUs, crash on virtual machines that do not grant AMX (seen here: SIGSEGV
# in ggml_backend_amx_mul_mat at the first decode).
set -euo pipefail
cd "$(dirname "$0")/.."

pin="llama-cpp-python==0.3.36"
server=.venv/bin/llama-server
stamp=.venv/llama-server.pin
recipe="$pin GGML_NATIVE=OFF"  # what the stamp records: a change here rebuilds
if [[ -x "$server" && "$(cat "$stamp" 2>/dev/null)" == "$recipe" ]]; then
    exit 0
fi
command -v c++ >/dev/null || {
    echo "build-llama-server.sh: a C++ compiler is needed (Debian/Ubuntu: apt install build-essential)" >&2
    exit 1
}
cmake=cmake
if ! command -v cmake >/dev/null; then  # PyPI's cmake wheel, into the virtual environment
    .venv/bin/python -m pip install --quiet "cmake>=3.25"
    cmake=.venv/bin/cmake
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "Building llama-server from $pin (a few minutes on 2 cores; once)..." >&2
.venv/bin/python -m pip download --quiet --no-deps --no-binary :all: "$pin" -d "$work"
tar -xzf "$work"/*.tar.gz -C "$work"
source_dir=$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)
"$cmake" -S "$source_dir" -B "$work/build" \
    -DCMAKE_BUILD_TYPE=Release \
    -DGGML_NATIVE=OFF \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_APP=OFF \
    -DLLAMA_BUILD_UI=OFF \
    -DLLAMA_USE_PREBUILT_UI=OFF \
    -DLLAMA_OPENSSL=OFF \
    -DGGML_CCACHE=OFF \
    >"$work/configure.log" || { cat "$work/configure.log" >&2; exit 1; }
"$cmake" --build "$work/build" --target llama-server -j "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; exit 1; }
install -m 755 "$work/build/bin/llama-server" "$server"
echo "$recipe" >"$stamp"
