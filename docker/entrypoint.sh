#!/bin/sh
# First start with an empty /data volume: put the container's default config there to edit.
set -e
if [ ! -f /data/config.toml ]; then
    cp /app/docker/config.toml /data/config.toml
    echo "mombot: wrote /data/config.toml (the embedded default); edit it and restart" >&2
fi
exec "$@"
