#!/usr/bin/env bash
# The test command: install what is missing, check the services, run every test (slow and
# browser tests included).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/services.sh
exec .venv/bin/pytest -q --durations=15 "$@"
