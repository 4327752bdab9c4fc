# syntax=docker/dockerfile:1
# GPU worker image: CUDA runtime, torch + torchvision from PyTorch's CUDA wheel index at the
# versions constraints.txt pins, then timm and the rest of the project under the same constraints
# (so no later install can swap torch for another build).
# Build from the repository root: docker build -f docker/worker.Dockerfile .
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv
WORKDIR /app

# 1) torch/torchvision from the CUDA index, pinned by constraints.txt (torch==X matches X+cu128).
COPY constraints.txt /tmp/deps/constraints.txt
RUN pip install -c /tmp/deps/constraints.txt --index-url "${TORCH_INDEX_URL}" torch torchvision
# 2) pyproject's base dependencies plus the `server` and `worker` extras (timm included), read from
#    pyproject itself so the list lives in one place (the extras' references to the project itself
#    are dropped: their contents are listed too); torch is already satisfied and stays.
COPY pyproject.toml /tmp/deps/pyproject.toml
RUN python -c "import tomllib; p = tomllib.load(open('/tmp/deps/pyproject.toml', 'rb'))['project']; extra = p['optional-dependencies']; print('\n'.join(r for r in p['dependencies'] + extra['server'] + extra['worker'] if not r.startswith(p['name'])))" \
        > /tmp/deps/requirements.txt \
    && pip install -c /tmp/deps/constraints.txt -r /tmp/deps/requirements.txt

# 3) the code, without resolving dependencies again.
COPY pyproject.toml README.md ./
COPY gkd_core ./gkd_core
COPY service ./service
COPY gkd_catalog ./gkd_catalog
COPY worker ./worker
COPY gkd_client ./gkd_client
COPY gkd_cli ./gkd_cli
COPY migrations ./migrations
COPY api ./api
RUN pip install --no-deps . \
    && python -c "import torch, gkd_core, timm, worker.celery_app; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    && useradd --create-home --uid 10001 gkd \
    && mkdir -p /data && chown gkd /data

USER gkd
ENV GKD_DATA_DIR=/data
# Pretrained weights (timm pulls them from the Hugging Face hub) land in the data volume, so a recreated
# container does not download the teachers again.
ENV HF_HOME=/data/hf TORCH_HOME=/data/torch
# One job at a time per GPU: concurrency 1 and prefetch 1 (set again in worker.celery_app).
CMD ["celery", "--app", "worker.celery_app:app", "worker", "--loglevel", "INFO", "--concurrency", "1", "--prefetch-multiplier", "1"]
