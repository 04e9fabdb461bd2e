# mempool-whale-exporter: python:3.11-slim, installed with `pip install .`, running as a
# non-root user. Metrics, API and the Alertmanager relay listen on port 9743.
#
#   docker build -t mempool-whale-exporter .
#   docker run -p 9743:9743 mempool-whale-exporter

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter/ exporter/
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:3.11-slim
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN groupadd --system --gid 10001 whale \
    && useradd --system --uid 10001 --gid whale --create-home \
       --home-dir /var/lib/mempool-whale-exporter --shell /usr/sbin/nologin whale
COPY --from=build /opt/venv /opt/venv

USER 10001:10001
# The working directory holds the exporter's store; docker-compose.yml mounts a volume here.
WORKDIR /var/lib/mempool-whale-exporter
VOLUME ["/var/lib/mempool-whale-exporter"]
EXPOSE 9743

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9743/healthz', timeout=4)"]

ENTRYPOINT ["mempool-whale-exporter"]
CMD ["--listen", "0.0.0.0:9743"]
