# syntax=docker/dockerfile:1
#
# ts-segmenter: one image, three entry points (ENTRYPOINT is `python -m`):
#   docker run -p 9090:9090 IMAGE                                         # gateway (default)
#   docker run -p 8080:8080 IMAGE predictor --model_name NAME --model_dir /mnt/models
#   docker run IMAGE trainer --project ID
#
# CPU image (default):  docker build -t ts-segmenter:0.1.0 .
# CUDA image:           docker build --build-arg TORCH_VARIANT=cu126 -t ts-segmenter:0.1.0-cuda .
#                       (any variant PyTorch publishes torch==TORCH_VERSION for, e.g. cu126, cu128;
#                       the Helm chart appends image.cudaTagSuffix, "-cuda", for GPU workloads)

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------- builder
FROM ${PYTHON_IMAGE} AS builder

# PyTorch wheel variant: cpu, or a CUDA variant such as cu126.
ARG TORCH_VARIANT=cpu
# Must equal the torch pin in pyproject.toml (tests/charts/test_dockerfile.py checks it).
ARG TORCH_VERSION=2.13.0

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

# torch first, from PyTorch's own index for the chosen variant: PyPI's Linux wheel is the CUDA
# build (GBs of nvidia-* wheels) even for CPU-only images. `pip install .` then finds the pin
# (torch==2.13.0) already satisfied by 2.13.0+<variant>.
RUN pip install --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" "torch==${TORCH_VERSION}"

WORKDIR /src
# Build context is filtered by .dockerignore (no .venv, tests, charts, ...).
COPY . .
RUN pip install . \
 && pip check \
 && python -c "import torch, sys; v = torch.__version__; print('torch', v); sys.exit(0 if v.startswith('${TORCH_VERSION}') else 1)"

# ---------------------------------------------------------------------------- runtime
FROM ${PYTHON_IMAGE} AS runtime

ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="ts-segmenter" \
      org.opencontainers.image.description="Label Studio ML backend that segments time series (gateway, KServe predictor, trainer)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.ts-segmenter.torch-variant="${TORCH_VARIANT}"

# HOME and TMPDIR point at /tmp: Kubernetes mounts a writable emptyDir there and keeps the root
# filesystem read-only.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    TMPDIR=/tmp

RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin app

COPY --from=builder /opt/venv /opt/venv

WORKDIR /app
USER 10001:10001

# 9090: gateway (env PORT); 8080: predictor (KServe HTTP).
EXPOSE 9090 8080

ENTRYPOINT ["python", "-m"]
CMD ["gateway"]
