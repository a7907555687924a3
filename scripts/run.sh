#!/usr/bin/env bash
# The main job: install what is missing, then run the quick benchmark on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/adamcu bench --preset quick "$@"
