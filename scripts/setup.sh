#!/usr/bin/env bash
# Create .venv and install the project with its test tools. Safe to run again: it only
# installs what is missing. torch==2.14.1 and torchvision==0.29.1 first, from the PyTorch CPU index (a local CPU wheel
# that pip finds on its own, e.g. through find-links, is used as well), so pip does not pull
# PyPI's multi-GB CUDA build. ADAMCU_TORCH_INDEX=URL takes torch from another index (e.g.
# https://download.pytorch.org/whl/cu128); ADAMCU_TORCH_INDEX= (empty) takes PyPI's default.
# Quiet unless something fails: pip's output goes to .venv/setup.log, shown (its end) only
# when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_INDEX="${ADAMCU_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
LOG=.venv/setup.log

# step WHAT COMMAND...: run COMMAND with its output in $LOG; on failure show the log's end and
# say what failed and where the whole log is
step() {
  local what="$1"
  shift
  echo "== $what: $*" >>"$LOG"
  if ! "$@" >>"$LOG" 2>&1; then
    tail -n 30 "$LOG" >&2
    echo "setup: $what failed (the whole output: $LOG); fix the cause above and rerun bash scripts/setup.sh" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv || {
    echo "setup: python3 -m venv .venv failed; install Python 3.11+ with venv (e.g. apt-get install python3-venv) and rerun" >&2
    exit 1
  }
fi
: >"$LOG"
said=""
announce() {  # one line before a long install, none when everything is there
  [ -n "$said" ] || echo "setup: installing $1 into .venv (a few minutes; log: $LOG)"
  said=1
}
if ! .venv/bin/python -c "import torch, torchvision" 2>/dev/null; then
  announce "torch and the project"
  step "upgrading pip" .venv/bin/pip install -q --upgrade pip
  # an unreachable index costs one quick failure per package, not minutes of retries
  index=()
  [ -n "$TORCH_INDEX" ] && index=(--extra-index-url "$TORCH_INDEX" --retries 2 --timeout 15)
  step "installing torch" .venv/bin/pip install -q "${index[@]}" torch==2.14.1 torchvision==0.29.1
fi
if ! .venv/bin/python -c "import trainer, server, oracle, pytest, playwright, schemathesis" 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
  announce "the project"
  step "installing the project" .venv/bin/pip install -q -e '.[server,trainer,test]'
  touch .venv/.installed
fi
