# syntax=docker/dockerfile:1
#
# xai-compress: one image for the API, the Celery GPU worker, beat and the migrations.
#
#   docker build -t xai-compress .            # CUDA torch (the GPU worker's image, the default)
#   docker build -t xai-compress:cpu \
#       --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu .    # CPU-only image
#
# TORCH_INDEX_URL is an *extra* index: pip takes the variant it carries (2.13.0+cu128,
# 2.13.0+cpu, ...) because a local version sorts above the plain PyPI one, and falls back to
# PyPI's default Linux wheel (also a CUDA build) when that index has no such version. The build
# log prints which torch and CUDA it got. TORCH_SPEC must stay within requirements/
# constraints.txt (torch==2.13.0, any local variant such as torch==2.13.0+cu126).
#
# The API process never imports torch; only the worker needs the CUDA wheel. A smaller API-only
# image is the CPU build above.

############################################################################ build stage
FROM python:3.11-slim AS build

ARG TORCH_SPEC="torch==2.13.0"
ARG TORCH_INDEX_URL="https://download.pytorch.org/whl/cu128"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN python -m venv /opt/venv

WORKDIR /src
COPY requirements/ requirements/

# 1. torch first: the largest layer, rebuilt only when TORCH_SPEC / TORCH_INDEX_URL change.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c requirements/constraints.txt \
        --extra-index-url "${TORCH_INDEX_URL}" "${TORCH_SPEC}" \
 && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"

# 2. The project's dependencies and the service extra, from the project metadata alone, so this
#    layer survives code edits (the packages are not copied yet: an empty distribution installs).
COPY pyproject.toml README.md ./
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install -c requirements/constraints.txt '.[service]'

# 3. onnx2torch without its torchvision dependency (see requirements/no-deps.txt).
RUN --mount=type=cache,target=/root/.cache/pip \
    pip install --no-deps -r requirements/no-deps.txt

# 4. The code itself; dependencies are already in place.
COPY . .
RUN pip install --no-deps --force-reinstall -c requirements/constraints.txt .

########################################################################## runtime stage
FROM python:3.11-slim AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    DATA_DIR=/app/data \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

RUN groupadd --system --gid 10001 xai \
 && useradd --system --uid 10001 --gid xai --home-dir /home/xai --create-home \
        --shell /usr/sbin/nologin xai

COPY --from=build /opt/venv /opt/venv

# Source tree (read-only for the service user): alembic.ini and migrations/ for `migrate`.
WORKDIR /app
COPY . .
RUN mkdir -p /app/data && chown xai:xai /app/data

USER 10001:10001

EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["uvicorn", "api.main:create_app", "--factory", "--host", "0.0.0.0", "--port", "8000"]
