#!/usr/bin/env bash
# The GPU check, as run on a lent GPU machine (its python3 holds a CUDA PyTorch), in one call:
# the step under set_sync_debug_mode("error") (tests/trainer/loop/test_step_syncs.py), the paper-
# resolution benchmark (CE vs ADA-MCU step, fp32/bf16 with and without channels_last: s/it,
# ratio, parts, peak allocated/reserved memory, host syncs per step), bf16 with torch.compile,
# the small-net speed ratio on CUDA, and one torchrun (NCCL, 1 process) adaptation on a tiny
# bundled benchmark. Results go to $OUT.
set -uo pipefail
OUT=${OUT:-outputs/device}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, sys; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"
python3 -c "import pytest" 2>/dev/null || pip install -q pytest hypothesis >/dev/null 2>&1
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/trainer/loop/test_step_syncs.py 2>&1 | tail -15 | tee "$OUT/step_syncs.log"
timeout 300 python3 -m trainer.bench.gpu --out "$OUT/gpu_bench.json" --max-seconds 170 2>&1 | tee "$OUT/gpu_bench.log"
timeout 150 python3 -m trainer.bench.gpu --settings bf16 --compile --out "$OUT/gpu_bench_compile.json" 2>&1 | tee "$OUT/gpu_bench_compile.log"
timeout 90 python3 -m stack.cli speed --device cuda --iterations 30 --out "$OUT/speed_small_cuda.json" 2>&1 | grep -v INFO | tee "$OUT/speed_small.log"
python3 -m stack.cli generate --out /tmp/tiny --count source-train=40 --count target-train=16 \
  --count target-val=8 --count target-test=8 >/dev/null 2>&1
printf 'data_root = "/tmp/tiny"\npretrain_iterations = 30\niterations = 20\neval_every = 10\nstrategy = "full"\n' > /tmp/tiny.toml
timeout 120 torchrun --nproc_per_node=1 -m trainer.distributed --config /tmp/tiny.toml \
  --out "$OUT/ddp" --cache /tmp/cache 2>&1 | grep -v INFO | tail -5 | tee "$OUT/ddp.log"
ls "$OUT/ddp" 2>/dev/null
