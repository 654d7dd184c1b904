# smsgw gateway: SMPP on 2775, HTTP on 8775, SQLite in /app/var.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY handlers ./handlers
COPY simulator ./simulator
COPY config ./config
RUN pip install --no-cache-dir .
RUN useradd --system --home /app smsgw && mkdir -p /app/var && chown smsgw /app/var
USER smsgw
EXPOSE 2775 8775
VOLUME ["/app/var"]
STOPSIGNAL SIGTERM
CMD ["smsgw", "serve", "--log-json"]
