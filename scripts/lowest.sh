#!/usr/bin/env bash
# The lowest allowed versions: a fresh venv with the lowest version that pyproject.toml allows
# of every direct dependency of the base install, the `server` extra and the server tests'
# tools (uv's --resolution lowest-direct), then the non-slow server tests (they need the
# PostgreSQL and Redis of scripts/services.sh). A floor that is too low fails here.
# Usage: bash scripts/lowest.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV="${ADAMCU_LOWEST_VENV:-${TMPDIR:-/tmp}/adamcu-lowest}"
rm -rf "$VENV"
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install -q uv
"$PY" - >"$VENV/requirements.txt" <<'PYEOF'
import re
import tomllib

project = tomllib.load(open("pyproject.toml", "rb"))["project"]
extras = project["optional-dependencies"]
tools = {"pytest", "pytest-timeout", "hypothesis", "schemathesis", "pyyaml"}
test = [r for r in extras["test"] if re.split(r"[<>=\[ ]", r)[0] in tools]
print("\n".join(project["dependencies"] + extras["server"] + test))
PYEOF
"$VENV/bin/uv" pip install -q --python "$VENV/bin/python" --resolution lowest-direct \
  -r "$VENV/requirements.txt"
if "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  echo "lowest.sh: a server install pulled torch" >&2
  exit 1
fi
echo "lowest.sh: the direct dependencies at their floors:"
"$VENV/bin/uv" pip freeze --python "$VENV/bin/python" \
  | grep -iE '^(fastapi|uvicorn|pydantic|pydantic-settings|sqlalchemy|alembic|redis|psycopg|httpx|numpy|pillow|prometheus-client|schemathesis|hypothesis|pytest|pytest-timeout|pyyaml)=' \
  | tr '\n' ' '
echo
PYTHONPATH="$PWD" exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  -m "not slow and not browser" tests/server "$@"
