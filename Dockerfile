# syntax=docker/dockerfile:1
# ragged in a container, for Linux hosts (see the `ragged` profile in docker-compose.yml).
# Ollama is not in here: it runs on the host, where it can use the GPU.
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

ENTRYPOINT ["ragged"]
CMD ["--help"]
