# syntax=docker/dockerfile:1
# SRE Agent Runtime image: `uvicorn main:app` on $PORT (Cloud Run sets it; 8080 otherwise).
# Needs BuildKit (default in Docker >= 23; deploy.sh turns it on for Cloud Build) for the
# bind mount that installs the wheels without leaving them in a layer.

ARG PYTHON_IMAGE=python:3.12-slim-bookworm
# `--build-arg CLOUD_EXTRAS=aws` adds botocore (requirements-aws.txt) for CLOUD_PROVIDER=aws;
# the default image carries only requirements.txt.
ARG CLOUD_EXTRAS=none

# --- builder: resolve and build every runtime dependency as a wheel -----------------------
FROM ${PYTHON_IMAGE} AS builder
ARG CLOUD_EXTRAS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /build
COPY requirements.txt requirements-aws.txt ./
# Runtime requirements only: requirements-dev.txt (pytest, ruff, mypy...) never enters the image.
# /build/runtime.txt is what the runtime stage installs: requirements.txt, plus the AWS pins
# when asked for; any other value fails the build rather than silently building without.
RUN case "${CLOUD_EXTRAS}" in \
        none) cp requirements.txt runtime.txt ;; \
        aws) cat requirements.txt requirements-aws.txt > runtime.txt ;; \
        *) echo "CLOUD_EXTRAS must be none or aws, not '${CLOUD_EXTRAS}'" >&2; exit 1 ;; \
    esac \
    && pip wheel --no-cache-dir --wheel-dir /wheels -r runtime.txt

# --- runtime: the wheels, the application, nothing else ----------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    SRE_PROMPT_PATH=/app/WINDSURF_SRE.md \
    INCIDENTS_DIR=/app/incidents

# --no-index: only the wheels built above can be installed, never something fetched now.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    --mount=type=bind,from=builder,source=/build/runtime.txt,target=/tmp/runtime.txt \
    pip install --no-cache-dir --no-index --find-links=/wheels -r /tmp/runtime.txt

# Fixed UID/GID so volume ownership and runAsNonRoot policies are predictable.
RUN groupadd --system --gid 10001 appuser \
    && useradd --system --uid 10001 --gid appuser --home-dir /app --no-create-home \
        --shell /usr/sbin/nologin appuser \
    && mkdir -p /app/incidents \
    && chown appuser:appuser /app/incidents

WORKDIR /app
# The source tree, filtered by .dockerignore (an allowlist of the top-level modules and
# packages), so `x.py` and a package `x/` are both picked up. Code stays root-owned and
# read-only for appuser; only /app/incidents is writable.
COPY . /app/
# Named explicitly so a missing system prompt fails the build, not the first start.
COPY WINDSURF_SRE.md /app/WINDSURF_SRE.md

# Numeric form of appuser (10001): lets Kubernetes-style runAsNonRoot checks verify it.
USER 10001:10001
EXPOSE 8080

# Docker/Compose liveness only: Cloud Run ignores HEALTHCHECK and uses the probes in terraform/.
# python, not curl: the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('PORT', '8080'), timeout=4)"]

# sh expands ${PORT:-8080}; `exec` replaces sh so uvicorn is PID 1 and receives SIGTERM
# directly (the runtime drains for SHUTDOWN_GRACE_SECONDS on SIGTERM). The protocol adds
# the request head/body deadlines (main/server.py); requests in flight at SIGTERM get 2 s.
# `python -m main --host 0.0.0.0 --port ...` is the same server with the same defaults.
CMD ["sh", "-c", "exec uvicorn main:app --host 0.0.0.0 --port \"${PORT:-8080}\" --http main.server:DeadlineH11Protocol --timeout-keep-alive 5 --timeout-graceful-shutdown 2"]
