# syntax=docker/dockerfile:1
# The kchat image: one image for every role, chosen by the command (see ops/docker-entrypoint.sh):
#   docker run IMAGE edge | worker | sink | topics | chatctl ARGS...
# Build: docker build -t kchat .        Run a one-host cluster: docker compose up (docker-compose.yml)

############################ 1. web client (React + Vite) ############################
FROM node:20-slim AS web
WORKDIR /src/web
# Dependencies first: this layer is reused until package-lock.json changes.
COPY web/package.json web/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/ ./
RUN npm run build

############################ 2. python dependencies and the project, in a venv ############################
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# Every dependency ships a manylinux wheel for CPython 3.11, so no compiler is needed.
# Install the dependencies from pyproject.toml alone (with an empty package), so that this
# layer survives code changes; then install the project itself on top.
COPY pyproject.toml ./
RUN mkdir chat && touch chat/__init__.py && pip install . && rm -rf chat build ./*.egg-info
COPY chat/ chat/
COPY edge/ edge/
COPY topologies/ topologies/
COPY tables/ tables/
COPY sinks/ sinks/
COPY media/ media/
COPY ops/*.py ops/docker-entrypoint.sh ops/
RUN pip install --no-deps --force-reinstall . \
    && rm -rf build ./*.egg-info \
    && python -c "import chat, edge, sinks, tables, topologies"

############################ 3. runtime ############################
FROM python:3.11-slim AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    CHAT_WEB_DIST=/app/web/dist \
    CHAT_EDGE_HOST=0.0.0.0
RUN groupadd --system --gid 10001 chat \
    && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home \
       --shell /usr/sbin/nologin chat
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The code stays root-owned (read-only to the app); /app itself is writable by the app user
# because Faust keeps its data directory (<app id>-data) in the working directory.
COPY --from=build /src/ /app/
COPY --from=web /src/web/dist /app/web/dist
RUN chmod 0755 /app/ops/docker-entrypoint.sh && chown 10001:10001 /app
USER 10001:10001
# The edge's HTTP/WebSocket port (CHAT_EDGE_PORT); workers and the sink serve only health and
# metrics, on 127.0.0.1 inside their container.
EXPOSE 8080
# GET /healthz of whichever role this container runs (python's urllib: no curl in slim).
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/app/ops/docker-entrypoint.sh", "healthcheck"]
ENTRYPOINT ["/app/ops/docker-entrypoint.sh"]
CMD ["edge"]
