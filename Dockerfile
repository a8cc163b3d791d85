# syntax=docker/dockerfile:1
# ragged in a container: the app (`ragged-app` in docker-compose.yml) and the command line
# (the `ragged` profile). Ollama is not in here: it runs natively on the host, where it can use
# the GPU (Metal on a Mac), and the containers reach it through host.docker.internal.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# The chromadb client library comes with ragged; keep its telemetry off in here too.
ENV ANONYMIZED_TELEMETRY=False
# Config and index state live here; compose mounts a named volume on it.
ENV RAGGED_HOME=/data

# Only what the build needs (.dockerignore keeps the rest out), so editing tests or docs
# does not invalidate this layer. README.md is the package's long description: pip needs it.
COPY pyproject.toml README.md /src/
COPY ragged /src/ragged
RUN pip install /src && rm -rf /src

# Not root, so what ragged writes to /data belongs to an ordinary user; uid 1000 is the usual
# first user on a Linux host. /data is made here so a fresh named volume inherits its owner.
RUN useradd --create-home --uid 1000 ragged && mkdir -p /data && chown ragged:ragged /data
USER ragged
WORKDIR /home/ragged

# `ragged serve`'s port (docker-compose.yml publishes it on the host's loopback).
EXPOSE 8000
ENTRYPOINT ["ragged"]
CMD ["--help"]
