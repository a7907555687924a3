# CPU image for every adamcu process: server, migration, trainer worker, simulated oracle.
#   docker build -t adamcu .
# The GPU worker uses Dockerfile.gpu (same layout, CUDA build of torch).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first, from the PyTorch CPU index, so the project install below does not pull a
# multi-GB CUDA build from PyPI.
ARG TORCH_VERSION=2.14.1
ARG TORCHVISION_VERSION=0.29.1
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install "torch==${TORCH_VERSION}" "torchvision==${TORCHVISION_VERSION}" \
    --index-url "${TORCH_INDEX_URL}"

WORKDIR /app
# Dependencies change less often than code: install them from pyproject.toml alone first.
COPY pyproject.toml README.md ./
RUN mkdir -p trainer server oracle client stack \
    && touch trainer/__init__.py server/__init__.py oracle/__init__.py client/__init__.py \
        stack/__init__.py \
    && pip install -e ".[server,trainer,s3]" \
    && rm -rf trainer server oracle client stack
# alembic.ini, migrations/ and web/ are found next to the server package (server/migrate.py).
COPY alembic.ini ./
COPY migrations ./migrations
COPY web ./web
COPY server ./server
COPY trainer ./trainer
COPY oracle ./oracle
COPY client ./client
COPY stack ./stack
RUN pip install --no-deps -e .

# Non-root user; /data (datasets) and /checkpoints are named volumes owned by it.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin adamcu \
    && mkdir -p /data /checkpoints \
    && chown adamcu:adamcu /data /checkpoints
USER adamcu

EXPOSE 8000
# No HEALTHCHECK here: the worker, oracle, migration and datagen containers of this image serve
# nothing. docker-compose.yml gives the server its own (GET /ready).
CMD ["python", "-m", "server.main", "--host", "0.0.0.0", "--port", "8000"]
