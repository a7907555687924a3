#!/usr/bin/env bash
# The main job: install what is missing, then run the whole labeling loop on this machine:
# server (SQLite, embedded queue), trainer worker and two simulated oracles, on the bundled
# benchmark, on the CPU. Prints budget spent, mIoU before and after, and where the report is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/adamcu loop "$@"
