# mempool-whale-exporter: python:3.11-slim, dependencies from the hashed lock file, the package
# itself with `pip install .`, running as a non-root user. Metrics, API and the Alertmanager relay
# listen on port 9743.
#
#   docker build --build-arg REVISION=$(git rev-parse --short=12 HEAD) -t mempool-whale-exporter .
#   docker run -p 127.0.0.1:9743:9743 mempool-whale-exporter
#
# requirements.lock pins every dependency with its hashes (`make lock` regenerates it), so two
# builds of the same commit install the same bytes.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY requirements.lock ./
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes --only-binary=:all: -r requirements.lock
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
ARG REVISION=unknown
# whale_exporter_build_info{revision}: the source commit this image was built from.
RUN echo "$REVISION" > exporter/REVISION \
    && /opt/venv/bin/pip install --no-deps .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 whale \
    && useradd --system --uid 10001 --gid whale --create-home \
       --home-dir /var/lib/mempool-whale-exporter --shell /usr/sbin/nologin whale \
    && install -d -o whale -g whale /run/whale-relay
# /run/whale-relay: docker-compose.yml's relay-token volume, which takes this owner when created.
COPY --from=build /opt/venv /opt/venv

USER 10001:10001
# The working directory holds the exporter's store; docker-compose.yml mounts a volume here.
WORKDIR /var/lib/mempool-whale-exporter
VOLUME ["/var/lib/mempool-whale-exporter"]
EXPOSE 9743

# GET /healthz on port 9743 (WHALE_LISTEN's port if set), over HTTPS when WHALE_WEB_CONFIG_FILE
# turns TLS on; a 401 from basic auth counts as answering.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["mempool-whale-exporter", "healthcheck"]

ENTRYPOINT ["mempool-whale-exporter"]
CMD ["run", "--listen", "0.0.0.0:9743"]
