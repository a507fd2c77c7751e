# The Evergreen operator image.
#
#   docker build -t REGISTRY/evergreen:0.1.0 .
#   docker push REGISTRY/evergreen:0.1.0
#   helm install evergreen charts/evergreen --set image.repository=REGISTRY/evergreen
#
# Stage 1 builds the wheel and installs it with the dependency versions pinned in
# constraints.txt into a virtualenv; stage 2 is a clean slim Python with only that virtualenv,
# running as a non-root user.
#
# The base is pinned by the digest of its multi-architecture index, so a rebuild gets the same
# Python and Debian; move tag and digest together (docker buildx imagetools inspect IMAGE:TAG).

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what the build reads (see .dockerignore): source changes do not invalidate less.
COPY pyproject.toml README.md LICENSE constraints.txt ./
COPY operator/ operator/
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
 && python -m venv /opt/evergreen \
 && /opt/evergreen/bin/pip install --constraint constraints.txt /wheels/*.whl

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="evergreen" \
      org.opencontainers.image.description="Kubernetes operator that keeps production ML models healthy" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/evergreen/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The same UID/GID as the chart's securityContext (65532, the customary "nonroot").
RUN groupadd --system --gid 65532 evergreen \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin evergreen
COPY --from=build /opt/evergreen /opt/evergreen
USER 65532:65532
# /metrics and kopf's /healthz (Helm values ports.metrics and ports.health).
EXPOSE 8000 8080
ENTRYPOINT ["evergreen"]
CMD ["run"]
