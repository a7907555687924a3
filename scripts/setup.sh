#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Safe to run again: it only
# installs what is missing. torch==2.13.0 first, from the PyTorch CPU index (a local CPU wheel
# that pip finds on its own, e.g. through find-links, is used as well), so pip does not pull
# PyPI's multi-GB CUDA build. ADAMCU_TORCH_INDEX=URL takes torch from another index (e.g.
# https://download.pytorch.org/whl/cu128); ADAMCU_TORCH_INDEX= (empty) takes PyPI's default.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_INDEX="${ADAMCU_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  # an unreachable index costs one quick failure per package, not minutes of retries
  index=()
  [ -n "$TORCH_INDEX" ] && index=(--extra-index-url "$TORCH_INDEX" --retries 2 --timeout 15)
  .venv/bin/pip install -q "${index[@]}" torch==2.13.0
fi
if ! .venv/bin/python -c "import trainer, server, oracle, pytest, playwright, schemathesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q -e '.[server,trainer,test]'
  touch .venv/.installed
fi
