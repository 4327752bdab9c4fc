# syntax=docker/dockerfile:1
# API image (also runs the one-shot `migrate` step): FastAPI + service layer. No torch, no CUDA:
# the API enqueues jobs by task name and never imports gkd_core.
# Build from the repository root: docker build -f docker/api.Dockerfile .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
WORKDIR /app

# Dependencies first, so code changes do not reinstall them: pyproject's base dependencies plus the
# `server` extra (no ML stack), still under the project's constraints file.
COPY constraints.txt docker/api-requirements.txt /tmp/deps/
RUN pip install -c /tmp/deps/constraints.txt -r /tmp/deps/api-requirements.txt

# Then the code. --no-deps: the dependencies are the ones installed above (base + `server`).
# gkd_core comes along for the dataset validator only (numpy + PIL; its torch import is optional).
COPY pyproject.toml README.md ./
COPY api ./api
COPY service ./service
COPY gkd_catalog ./gkd_catalog
COPY gkd_core ./gkd_core
COPY gkd_client ./gkd_client
COPY gkd_cli ./gkd_cli
COPY migrations ./migrations
COPY docker/prestart.sh ./docker/prestart.sh
RUN pip install --no-deps . \
    && python -c "import api.main, service.storage, migrations, gkd_core.data.validation, gkd_cli.cli" \
    && ! python -c "import torch" 2>/dev/null \
    && useradd --create-home --uid 10001 gkd \
    && mkdir -p /data && chown gkd /data

USER gkd
# Validation copies s3:// sets here; a volume mounted on /data takes this folder's owner when first created.
ENV GKD_DATA_DIR=/data
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=5 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"
# uvicorn with GKD_API_WORKERS processes, by default one per core the container may use (api/__main__.py).
CMD ["python", "-m", "api", "--host", "0.0.0.0", "--port", "8000"]
