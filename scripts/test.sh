#!/usr/bin/env bash
# The test command: install what is missing, check the services, lint (ruff, the size rule of
# docs/architecture.md), run every test (slow and browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/python scripts/check_sizes.py
exec .venv/bin/pytest -q --durations=15 "$@"
