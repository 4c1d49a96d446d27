# Production image: no demo mode, non-root, the embedded engine's data on a volume
# unless GIFTING_REDIS_URL points at an external Redis/Valkey.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GIFTING_HOST=0.0.0.0 \
    GIFTING_PORT=8000 \
    GIFTING_DATA_DIR=/var/lib/gifting

RUN useradd --system --uid 10001 --home-dir /var/lib/gifting --create-home gifting

WORKDIR /app
COPY pyproject.toml README.md ./
COPY server ./server
COPY loadtest ./loadtest
RUN pip install --no-compile .
# The browser clients, served from the working directory (see GIFTING_CLIENT_DIR).
COPY client_demo ./client_demo

USER gifting
VOLUME ["/var/lib/gifting"]
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=2).status == 200 else 1)"]
CMD ["gifting-server", "serve"]
