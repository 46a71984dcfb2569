# LeafWatch's production image: the API with its bundled model, run as an unprivileged user.
#
#   docker build -t leafwatch:0.1.0 .          (deploy/docker-compose.yml builds it for you)
#
# The base is pinned to a patch release. To pin its content too, resolve the digest when you
# build and pass it in, for example
#   docker buildx imagetools inspect python:3.11.17-slim-trixie   (prints the sha256 digest)
#   docker build --build-arg PYTHON_IMAGE=python:3.11.17-slim-trixie@sha256:<digest> .
# (The digest was not resolved here: the machines that wrote this file have no registry access.)
ARG PYTHON_IMAGE=python:3.11.17-slim-trixie

# ---- build: the leafwatch wheel and a wheel of every dependency --------------------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# .dockerignore admits only these: no virtualenv, var/, logs or secrets reach the build.
COPY pyproject.toml README.md ./
COPY src ./src
# The bundled model (model/bundled/*.onnx, card, drift reference) and the migrations are package
# data in pyproject.toml, so they travel inside the wheel. The s3 extra (boto3) lets replicas
# that share no disk keep images on S3-compatible storage (docs/images.md).
RUN pip wheel --wheel-dir /wheels '.[s3]'

# ---- runtime: the wheels installed into a clean interpreter, nothing to compile with ----------
FROM ${PYTHON_IMAGE} AS runtime
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# logrotate serves the compose stack's log-rotation sidecar: with several workers the service
# reopens a renamed log file but does not rotate it itself (see observe/logs.py).
RUN apt-get update \
    && apt-get install -y --no-install-recommends logrotate \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid, so volume ownership and the secret files' permissions can be planned for.
RUN groupadd --system --gid 10001 leafwatch \
    && useradd --system --uid 10001 --gid leafwatch --no-create-home \
        --home-dir /var/lib/leafwatch --shell /usr/sbin/nologin leafwatch \
    && install -d -o leafwatch -g leafwatch -m 0755 /var/lib/leafwatch /var/log/leafwatch

# A bind mount, not a COPY: the wheels are installed without ever becoming a layer of the image.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links /wheels 'leafwatch[s3]' \
    && leafwatch --help >/dev/null

# Images, the model registry (seeded from the bundled model on first start) and the SQLite
# fallback live under the var dir; the JSON log file goes where Alloy reads it. With several
# workers the metrics files go to a per-container directory, never a shared volume: every
# replica empties its own at start.
ENV LEAFWATCH_VAR_DIR=/var/lib/leafwatch \
    LEAFWATCH_LOG_FILE=/var/log/leafwatch/app.log \
    LEAFWATCH_LOG_FORMAT=json \
    LEAFWATCH_METRICS_DIR=/tmp/leafwatch-metrics

WORKDIR /var/lib/leafwatch
VOLUME ["/var/lib/leafwatch", "/var/log/leafwatch"]
USER 10001:10001
EXPOSE 8000

# Liveness only (/health): whether the model and the database are ready is /ready, which
# the compose file checks; a container should not be restarted because PostgreSQL is down.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["leafwatch"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
