# The production image: no demo mode, a non-root user, exec-form start, a health check on
# /readyz. tests/test_dockerfile.py checks these rules and runs the build's RUN steps.
#
#   docker build -t gifting-server .
#   docker run --env-file .env -p 8000:8000 -v gifting-data:/var/lib/gifting gifting-server
#
# Required at run time (the server refuses to start without it outside demo mode):
#   GIFTING_JWT_SECRET       HS256 secret of the bearer tokens, at least 32 bytes
# Each payment provider is on when it is configured, for example:
#   GIFTING_WEBHOOK_SECRET   HMAC secret of the server's own signed payment webhook, at least 32 bytes
# With no GIFTING_REDIS_URL the server runs its own engine with its data on the volume;
# GIFTING_WORKERS (or `--workers N`) runs N processes; README.md, "Deployment", has the rest.

FROM python:3.12-slim-bookworm AS build

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv
ENV PATH="$VIRTUAL_ENV/bin:$PATH"

WORKDIR /src
RUN python -m venv "$VIRTUAL_ENV"

# The dependencies alone first: this layer is rebuilt only when pyproject.toml changes.
# Every one of them ships wheels, so no compiler is needed.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" > requirements.txt \
    && pip install --only-binary=:all: -r requirements.txt

COPY README.md ./
COPY server ./server
COPY loadtest ./loadtest
RUN pip install --no-deps .


FROM python:3.12-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    GIFTING_DEMO=0 \
    GIFTING_HOST=0.0.0.0 \
    GIFTING_PORT=8000 \
    GIFTING_DATA_DIR=/var/lib/gifting
ENV PATH="$VIRTUAL_ENV/bin:$PATH"

RUN groupadd --system --gid 10001 gifting \
    && useradd --system --uid 10001 --gid gifting --no-log-init --create-home \
    --home-dir /var/lib/gifting --shell /usr/sbin/nologin gifting

# Only the installed virtualenv comes over from the build stage: no pip cache, no sources.
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
# The browser clients, found in the working directory (see GIFTING_CLIENT_DIR).
COPY client_demo ./client_demo

# By number, so that a runtime can tell it is not root without reading /etc/passwd.
USER 10001:10001
VOLUME ["/var/lib/gifting"]
EXPOSE 8000
# uvicorn finishes open requests on SIGTERM (up to 5 s); with --workers the parent stops
# every worker, then the embedded engine, which flushes its append-only file.
STOPSIGNAL SIGTERM
# Python is in the image; curl is not. It asks this container's own port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GIFTING_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2).status == 200 else 1)"]
CMD ["gifting-server", "serve"]
