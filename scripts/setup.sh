#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Safe to run again: it only
# installs what is missing. torch==2.13.0 first, so pip takes the CPU wheel on disk instead
# of a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.13.0
fi
if ! .venv/bin/python -c "import trainer, server, oracle, pytest, playwright, schemathesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install -q -e '.[test]'
  touch .venv/.installed
fi
