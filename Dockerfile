# syntax=docker/dockerfile:1
# Unified AI Gateway image: a thin mirror of scripts/setup.sh (a venv from the exact pins in
# requirements.lock, then the project with --no-deps), running as a non-root user.
# Not built in CI: there is no Docker engine on the CI machines (see docs/provisioning.md).
# The base image is pinned by digest: the multi-platform index digest of python:3.11.15-slim-bookworm as
# Docker's docker-library/repo-info records it (repos/python/remote/3.11.15-slim-bookworm.md, commit
# 3effc3eac4f6). Not pulled or verified here (no registry access); `docker buildx imagetools inspect
# python:3.11.15-slim-bookworm` shows the digest the tag has now. To update, change tag and digest together.
ARG PYTHON_IMAGE=python:3.11.15-slim-bookworm@sha256:d29f48a31a8b408ed19272ca1e7b10ebae13b240a27e862d3d4217c528e2e0c3

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/ai-gateway/venv \
 && /opt/ai-gateway/venv/bin/pip install -r requirements.lock
COPY pyproject.toml README.md ./
COPY proxy_config ./proxy_config
COPY custom_router ./custom_router
COPY hooks ./hooks
COPY litellm_compat ./litellm_compat
COPY gateway ./gateway
COPY emulators ./emulators
RUN /opt/ai-gateway/venv/bin/pip install --no-deps .
# DB mode (LiteLLM admin UI, virtual keys) needs LiteLLM's Prisma client. `prisma generate`
# downloads Prisma's engines from its CDN, so it happens here, at build time. WITH_PRISMA=0 skips it.
ARG WITH_PRISMA=1
ENV PRISMA_BINARY_CACHE_DIR=/opt/ai-gateway/prisma PRISMA_HOME_DIR=/opt/ai-gateway/prisma-home
RUN if [ "$WITH_PRISMA" = "1" ]; then \
      /opt/ai-gateway/venv/bin/pip install prisma==0.15.0 \
      && schema="$(/opt/ai-gateway/venv/bin/python -c 'import litellm.proxy, pathlib; print(pathlib.Path(litellm.proxy.__file__).parent / "schema.prisma")')" \
      && PATH="/opt/ai-gateway/venv/bin:$PATH" prisma generate --schema "$schema"; \
    fi

FROM ${PYTHON_IMAGE}
RUN useradd --system --home-dir /var/lib/ai-gateway --create-home --shell /usr/sbin/nologin ai-gateway
COPY --from=build /opt/ai-gateway /opt/ai-gateway
COPY config.yaml /etc/ai-gateway/config.yaml
ENV PATH=/opt/ai-gateway/venv/bin:$PATH \
    GATEWAY_CONFIG=/etc/ai-gateway/config.yaml \
    DATA_DIR=/var/lib/ai-gateway \
    HOST=0.0.0.0 \
    PORT=8080 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PRISMA_BINARY_CACHE_DIR=/opt/ai-gateway/prisma \
    PRISMA_HOME_DIR=/opt/ai-gateway/prisma-home \
    PYTHONUNBUFFERED=1
USER ai-gateway
WORKDIR /var/lib/ai-gateway
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health/liveliness' % os.environ.get('PORT', '8080'), timeout=4)"]
# `gateway serve` runs `gateway check` itself and refuses to start on an invalid config.
ENTRYPOINT ["gateway"]
CMD ["serve", "--workers", "2", "--limit-max-requests", "10000"]
