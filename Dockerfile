# syntax=docker/dockerfile:1
# One image for the operator, the sidecar and the backup agent:
#   rampart-operator run | rampart-sidecar --config FILE | rampart-backup ...
# Build: docker build -t ghcr.io/rampart-dev/rampart:0.1.0 .

# Every input is pinned: the base image by digest (one python:3.11-slim-bookworm;
# move it on purpose), every Python package by version and hash
# (requirements/*.txt, from scripts/lock), installed with --require-hashes.

# --- build: the project and its dependencies into a virtualenv -------------------
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C compiler for mypyc, which compiles the sidecar's request path (setup.py);
# only this stage has it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements/ requirements/
# The build tools (setuptools, mypy) in a virtualenv of their own, never shipped.
RUN python -m venv /opt/build \
 && /opt/build/bin/pip install --require-hashes --no-deps -r requirements/build.txt
RUN python -m venv /opt/rampart \
 && /opt/rampart/bin/pip install --require-hashes --no-deps --no-compile -r requirements/image.txt
COPY pyproject.toml setup.py README.md ./
COPY common/ common/
COPY operator/ operator/
COPY sidecar/ sidecar/
COPY backup/ backup/
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheel . \
 && /opt/rampart/bin/pip install --no-deps --no-compile /tmp/wheel/*.whl \
 && /opt/rampart/bin/python -m compileall -q -j 0 /opt/rampart/lib

# --- runtime: slim Python, the PostgreSQL and Redis clients, no compilers ---------
FROM python:3.11-slim-bookworm@sha256:a36c24f9cbdf4fd0f52d67f0823eeac19c2028c637cecc392d97f980d4fec56b
LABEL org.opencontainers.image.source="https://github.com/rampart-dev/rampart" \
      org.opencontainers.image.description="Rampart: operator, sidecar and backup agent" \
      org.opencontainers.image.licenses="Apache-2.0"
# pg_dump/pg_restore 15 (Debian 12's) for PostgreSQL backups; redis-cli for debugging.
RUN apt-get update \
 && apt-get install -y --no-install-recommends postgresql-client-15 redis-tools \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/rampart /opt/rampart
ENV PATH=/opt/rampart/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# A numeric non-root user, so runAsNonRoot can verify it without a passwd entry
# (65532 is distroless's "nonroot").
USER 65532:65532
WORKDIR /tmp
# sidecar proxy, sidecar admin, operator metrics, operator health, webhooks, alerts
EXPOSE 8000 9901 8080 8081 9443 9095
CMD ["rampart-operator", "run"]
