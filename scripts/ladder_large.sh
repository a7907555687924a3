#!/usr/bin/env bash
# The resolution ladder's 256x512 rung (issue 20 item 5), one seed after the other, each seed
# in its own folder (results.json is rewritten after every run, so partial results survive):
#   nohup nice -n 15 bash scripts/ladder_large.sh [SHIFT] [SEEDS...] > outputs/ladder-256x512.log 2>&1 &
# rows in the order the targets need them (mcu-cap, ADA-MCU, random first).
set -euo pipefail
shift_name=${1:-moderate}
seeds=("${@:2}")
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1 2)
for seed in "${seeds[@]}"; do
  .venv/bin/adamcu bench --preset ladder --size 256x512 --shifts "$shift_name" --seeds "$seed" \
    --strategies mcu-cap,full,random,pixelpick,ripu,supervised \
    --out "outputs/ladder-256x512-$shift_name-s$seed" --data data/bench-ladder
done
