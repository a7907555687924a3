#!/usr/bin/env bash
# The project as a user installs it: build the wheel, install it (not editable) with the
# `server` extra into a fresh venv outside the checkout, check that no torch came along, run
# adamcu-migrate, start adamcu-server from another folder, fetch / (the web UI), /docs and
# /metrics, and let adamcu-oracle answer a run's queries against it. Then add the `trainer`
# extra (torch from the PyTorch CPU index, or a local CPU wheel) and check adamcu-worker and
# adamcu --version. Usage: bash scripts/wheel_check.sh   (PYTHON=python3.11 to pick one)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-python3}"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/adamcu-wheel.XXXXXX")"
SERVER_PID=""
cleanup() {
  local rc=$?
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" || true; fi
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
say() { echo "wheel_check: [${SECONDS}s] $*"; }

say "building the wheel"
"$PY" -m pip wheel -q --no-deps -w "$WORK/dist" "$ROOT"
WHEEL="$(ls "$WORK"/dist/adamcu-*.whl)"
"$PY" -m zipfile -l "$WHEEL" | grep "server/_data/web/index.html" >/dev/null \
  || { say "the wheel lacks the web UI"; exit 1; }

say "installing $(basename "$WHEEL")[server] into a fresh venv"
"$PY" -m venv "$WORK/venv"
BIN="$WORK/venv/bin"
"$BIN/pip" install -q "${WHEEL}[server]"
if "$BIN/python" -c "import torch" 2>/dev/null; then say "a server install pulled torch"; exit 1; fi

cd "$WORK"  # nothing of the checkout is on the path from here on
export ADAMCU_DATABASE_URL="sqlite:///$WORK/adamcu.db" ADAMCU_ADMIN_TOKEN="wheel-check-admin"
"$BIN/adamcu-migrate"
PORT="$("$BIN/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$BIN/adamcu-server" --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
URL="http://127.0.0.1:$PORT"
"$BIN/python" "$ROOT/scripts/wheel_world.py" wait "$URL"
"$BIN/python" "$ROOT/scripts/wheel_world.py" pages "$URL"
"$BIN/python" "$ROOT/scripts/wheel_world.py" world "$URL" "$WORK/data" >"$WORK/world.env"
# shellcheck disable=SC1091
source "$WORK/world.env"
ADAMCU_TOKEN="$ORACLE_TOKEN" "$BIN/adamcu-oracle" --server "$URL" --run "$RUN_ID" \
  --data "$WORK/data" --idle-exit 1 --max-answers 4
"$BIN/python" "$ROOT/scripts/wheel_world.py" answered "$URL" "$RUN_ID" 4
head -c 300 "$WORK/server.log" | grep '"level"' >/dev/null || { say "server logs are not JSON"; exit 1; }

say "adding the trainer extra (torch==2.14.1 and torchvision==0.29.1 as scripts/setup.sh installs them)"
"$BIN/pip" install -q --extra-index-url https://download.pytorch.org/whl/cpu --retries 2 \
  --timeout 15 torch==2.14.1 torchvision==0.29.1 "${WHEEL}[server,trainer]"
"$BIN/adamcu" --version
"$BIN/adamcu-worker" --help >/dev/null
"$BIN/python" -c "import torch; assert '+cpu' in torch.__version__ or not torch.cuda.is_available()"
say "ok"
