# mombot: the embedded default (console, bundled SmolLM2 on llama.cpp, SQLite) in a slim image.
# The install step is scripts/install.sh, the same one the README's quick start runs.
FROM python:3.11-slim

# A C/C++ toolchain and cmake: llama-cpp-python compiles llama.cpp during the install.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 mombot \
    && mkdir /data && chown mombot:mombot /data
WORKDIR /app
COPY --chown=mombot:mombot . /app
USER mombot
RUN scripts/install.sh \
    && cp config.toml /data/config.toml

# Config and data live outside the image: /data holds config.toml, the database and logs.
ENV PATH="/app/.venv/bin:${PATH}"
WORKDIR /data
VOLUME ["/data"]
CMD ["mombot", "--config", "/data/config.toml", "chat"]
