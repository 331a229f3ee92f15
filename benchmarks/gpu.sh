#!/usr/bin/env bash
# GPU checks and benchmarks for a lent GPU session (or the CPU with --device cpu), one script, one call of ≤ 8 min.
#   benchmarks/gpu.sh [--device cuda|cpu] [--quick] [--deadline SECONDS] [--sweep-timeout SECONDS]
# 1. correctness on the device (benchmarks/gpu_checks.py), 2. host syncs per step for every family
# (benchmarks/host_syncs.py), 3. encoder and whole training step, eager and compiled, batch 32 and 128, against the
# masked-dense reference and plain timm (benchmarks/train_step.py, starts no new run after --deadline s, 330 s),
# 4. the resolution sweep of every family's encoder step, sparse against dense, with peak memory
# (benchmarks/sparse_vs_dense.py --sweep, stopped after --sweep-timeout s, 120 s).
# Results land in $OUT (the device tool's folder) or benchmarks/out: *.log, train_step_<device>.json and
# sweep_<device>.json.
# --quick: tiny sizes, for a dry run on the CPU that exercises every code path (compiled runs included).
# On the lent machine (no network) the packages it lacks travel as wheels in .whl/ (mmengine, fvcore and their
# pure-Python needs); hiermae itself is installed from the working tree. spconv is not needed: no layer picks the
# spconv backend by default. Make the wheels here (git-excluded folder):
#   echo /.whl/ >> .git/info/exclude; mkdir -p .whl; cd .whl
#   for p in mmengine==0.10.7 addict yapf platformdirs termcolor iopath yacs webdataset==1.0.2 braceexpand; do \
#     python3 -m pip download --no-deps \
#     --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d . $p; done
#   python3 -m pip wheel --no-deps -w . fvcore==0.1.5.post20221221
# and carry `.whl` with the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
quick=0
deadline=330
sweep_timeout=120
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --deadline) deadline=$2; shift 2 ;;
    --sweep-timeout) sweep_timeout=$2; shift 2 ;;
    *) echo "gpu.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
out=${OUT:-benchmarks/out}
mkdir -p "$out"
if [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3
  site=/tmp/hiermae-site
  [ -d .whl ] && "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
  export PYTHONPATH=$site
fi
export PYTHONUNBUFFERED=1
start=$(date +%s)
if [ "$quick" = 1 ]; then
  size=(--input 64) checks=(--input 64 --batch 2) syncs=(--input 64 --batch 2)
  steps=(--batches 2 --compiled-batches 2 --backbones resnet18,swin_tiny_patch4_window7_224 --warmup 2 --repeats 2)
  sweep=(--sweep 64:2,96:2 --backbones resnet18,swin_tiny_patch4_window7_224 --warmup 1 --repeats 2)
else
  size=() checks=() syncs=(--batch 8) steps=()
  families=resnet50,convnext_tiny,swin_tiny_patch4_window7_224,vit_small_patch16_224,mobilenetv3_large_100
  sweep=(--sweep 224:64,320:32,448:16 --backbones $families)
fi
[ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# correctness first: a failed check is reported, and the timings still run
"$python" benchmarks/gpu_checks.py --device "$device" "${checks[@]}" 2>&1 | tee "$out/gpu_checks_$device.log" || true
"$python" benchmarks/host_syncs.py --device "$device" "${syncs[@]}" 2>&1 | tail -16 | tee "$out/host_syncs_$device.log"
"$python" benchmarks/train_step.py --device "$device" "${size[@]}" "${steps[@]}" --deadline "$deadline" \
  --json "$out/train_step_$device.json" 2>&1 | tee "$out/train_step_$device.log"
timeout "$sweep_timeout" "$python" benchmarks/sparse_vs_dense.py --device "$device" "${sweep[@]}" \
  --json "$out/sweep_$device.json" 2>&1 | tee "$out/sweep_$device.log" || echo "gpu.sh: sweep stopped" >&2
echo "gpu.sh: done in $(( $(date +%s) - start )) s"
