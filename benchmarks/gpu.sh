#!/usr/bin/env bash
# GPU checks and benchmarks for a lent GPU session (or the CPU with --device cpu), one script, one call.
#   benchmarks/gpu.sh [--device cuda|cpu] [extra sparse_vs_dense.py arguments]
# On the lent machine (no network) the packages it lacks travel as wheels in .whl/ (mmengine, fvcore and their
# pure-Python needs); hiermae itself is installed from the working tree. spconv is not needed: no layer picks the
# spconv backend by default (see BENCHMARKS.md, per-layer backends). Make the wheels here (git-excluded folder):
#   echo /.whl/ >> .git/info/exclude; mkdir -p .whl; cd .whl
#   for p in mmengine==0.10.7 addict yapf platformdirs termcolor iopath yacs webdataset==1.0.2 braceexpand; do \
#     python3 -m pip download --no-deps \
#     --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64 -d . $p; done
#   python3 -m pip wheel --no-deps -w . fvcore==0.1.5.post20221221
# and carry `.whl` with the device call.
set -euo pipefail
cd "$(dirname "$0")/.."
device=cuda
if [ "${1:-}" = "--device" ]; then device=$2; shift 2; fi
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
[ "$device" = cuda ] && { nvidia-smi --query-gpu=name,memory.total --format=csv,noheader; \
  "$python" benchmarks/gpu_checks.py 2>&1 | tee "$out/gpu_checks.log"; }
"$python" benchmarks/sparse_vs_dense.py --device "$device" --input 224 --batch 32 --mask-ratio 0.75 \
  --backbones resnet50,convnext_tiny,swin_tiny_patch4_window7_224,vit_small_patch16_224 \
  --json "$out/sparse_vs_dense_$device.json" "$@" 2>&1 | tee "$out/sparse_vs_dense_$device.log"
"$python" benchmarks/sparse_backends.py --device "$device" --json "$out/sparse_backends_$device.json" 2>&1 \
  | tee "$out/sparse_backends_$device.log"
"$python" benchmarks/swin_host_syncs.py --device "$device" 2>&1 | tee "$out/swin_host_syncs_$device.log"
