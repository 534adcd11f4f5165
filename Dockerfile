# mombot in a container. Two variants of one Dockerfile:
#   docker build -t mombot .                                 slim, CPU-only PyTorch (the default)
#   docker build -t mombot:cuda --build-arg VARIANT=cuda .   CUDA PyTorch for Stable Diffusion on NVIDIA GPUs
# The install step is scripts/install.sh, the same script as the README's quick start
# (tests/test_deployment.py checks that they stay the same).
ARG PYTHON_IMAGE=python:3.11-slim

# -- build: a compiler and cmake for llama-server, then the same install as on a workstation --
FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . /app
RUN scripts/install.sh --torch ${VARIANT} \
    && rm -rf /root/.cache

# -- run: no compiler, a non-root user, config and data on a volume ------------------------
FROM ${PYTHON_IMAGE}
# libgomp: llama.cpp's OpenMP threads.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 1000 mombot \
    && mkdir /data && chown mombot:mombot /data
COPY --from=build --chown=mombot:mombot /app /app
ENV PATH="/app/.venv/bin:${PATH}" \
    HF_HOME=/data/huggingface \
    PYTHONUNBUFFERED=1
USER mombot
WORKDIR /data
VOLUME ["/data"]
# /metrics and /healthz (docker/config.toml turns them on)
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=10s --start-period=180s --retries=3 \
    CMD ["mombot", "--config", "/data/config.toml", "health"]
ENTRYPOINT ["/app/docker/entrypoint.sh"]
CMD ["mombot", "--config", "/data/config.toml", "chat"]
