# smsgw gateway: SMPP on 2775, HTTP on 8775, SQLite in /app/var.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY handlers ./handlers
COPY simulator ./simulator
COPY config ./config
# (build/ and the egg-info setuptools leaves in /app are of no use once installed)
RUN pip install --no-cache-dir . && rm -rf build smsgw.egg-info
RUN useradd --system --home /app smsgw && mkdir -p /app/var && chown smsgw /app/var
USER smsgw
EXPOSE 2775 8775
VOLUME ["/app/var"]
STOPSIGNAL SIGTERM
# /ready: 200 while the gateway takes traffic, 503 while it stops or its store cannot commit, refused until it has
# started (README). The slim image has no curl: urlopen raises on a 503 or a refused connection, exit status 1.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8775/ready', timeout=4)"]
CMD ["smsgw", "serve", "--log-json"]
