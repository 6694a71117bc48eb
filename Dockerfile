# The image of docker-compose.yml: shardmon with its reference bot, node and exporter.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shardmon ./shardmon
COPY cogs ./cogs
RUN pip install --no-cache-dir . && useradd --create-home shardmon \
    && mkdir -p /home/shardmon/logs && chown shardmon:shardmon /home/shardmon/logs
USER shardmon
WORKDIR /home/shardmon
CMD ["python", "-m", "shardmon.bot"]
