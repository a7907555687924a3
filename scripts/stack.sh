#!/usr/bin/env bash
# The docker-compose stack without Docker: migration, server (PostgreSQL + Redis Streams),
# trainer worker and simulated oracles as local processes, on the bundled benchmark.
#   bash scripts/stack.sh                                   # quick size, ~5 min on a CPU
#   bash scripts/stack.sh --size tiny --iterations 12 --pretrain-iterations 20
#   bash scripts/stack.sh --database-url postgresql+psycopg://u:p@host/db --redis-url redis://host/0
#   bash scripts/stack.sh --human --port 8000                # a session for people (README)
# Options: python -m stack.local --help. $PYTHON overrides the interpreter (default .venv).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
if [ ! -x "$PYTHON" ]; then
  bash scripts/setup.sh
fi
exec "$PYTHON" -m stack.local "$@"
