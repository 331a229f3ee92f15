#!/usr/bin/env bash
# The backbone comparison (tools/compare.py) on one GPU, in one call of at most 8 minutes, into its own ledger.
#
#   experiments/gpu_compare.sh pack                     # here, with the network: wheels and data for the GPU machine
#   experiments/gpu_compare.sh [--device cuda|cpu] [--tiny] [--report PATH] [--out RUN_FOLDER] [--stop-after MINUTES]
#
# The GPU machine is a copy of the working tree without network: `pack` puts what it lacks into two ignored folders
# that the call must carry: `.whl/` (mmengine, fvcore and their pure-Python needs; hiermae itself is installed from
# the tree; spconv is not needed, no layer picks it by default) and `.gpu-data/` (Fashion-MNIST's four IDX files,
# copied where hiermae reads them when that folder is missing). Device call:
#   run(command="bash experiments/gpu_compare.sh", carry=[".whl", ".gpu-data"], timeout_s=540)
# Then commit the ledger that comes back in $OUT (compare-gpu.tar.gz: the report, its plots and runs/).
#
# The run: all four families from their recipes, seeds 0 1 2, kNN, BN linear probe and fine-tuning on 1000 labels,
# like the CPU comparison, with a pretraining budget of 1 min per run at batch 256 (about 10× the images of the
# CPU comparison's runs; the report's budget table states the images seen) and 4 chains at a time on the one GPU.
# --stop-after keeps the call inside 8 minutes: no chain starts that its estimate says cannot finish (the first
# chains are estimated roughly, later ones from the ledger); a rerun continues from the ledger. --device cpu hides
# the GPU; with --tiny (one backbone, one seed, seconds of pretraining, a few images) it is the CPU dry run that
# tests/test_ledger.py runs.
set -euo pipefail
cd "$(dirname "$0")/.."
FMNIST=/usr/share/datasets/fashion-mnist
if [ "${1:-}" = pack ]; then
  mkdir -p .whl .gpu-data
  for p in mmengine==0.10.7 addict yapf platformdirs termcolor iopath yacs webdataset==1.0.2 braceexpand; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux2014_x86_64 -d .whl "$p"
  done
  python3 -m pip wheel -q --no-deps -w .whl fvcore==0.1.5.post20221221
  cp "$FMNIST"/*.gz .gpu-data/
  du -sh .whl .gpu-data
  exit 0
fi
device=cuda tiny=0 report=docs/results/compare-gpu.md out=work_dirs/compare-gpu stop_after=
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device=$2; shift 2 ;;
    --tiny) tiny=1; shift ;;
    --report) report=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --stop-after) stop_after=$2; shift 2 ;;
    *) echo "gpu_compare.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$stop_after" ]; then  # the GPU call's 8 minutes, less set-up; the CPU dry run is not timed
  stop_after=7
  [ "$tiny" = 1 ] && stop_after=30
fi
if [ "$device" = cpu ]; then
  export CUDA_VISIBLE_DEVICES=""
elif [ "$device" != cuda ]; then
  echo "gpu_compare.sh: --device is cuda or cpu, not $device" >&2; exit 2
fi
if [ ! -d "$FMNIST" ]; then
  [ -d .gpu-data ] || { echo "gpu_compare.sh: no $FMNIST and no .gpu-data/ (run 'pack' and carry it)" >&2; exit 2; }
  mkdir -p "$FMNIST" && cp .gpu-data/*.gz "$FMNIST"/
fi
if [ -x .venv/bin/python ]; then
  python=.venv/bin/python
else
  python=python3 site=/tmp/hiermae-site
  [ -d .whl ] && "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" .whl/*.whl
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" .
  export PYTHONPATH=$site
fi
export PYTHONUNBUFFERED=1
if [ "$tiny" = 1 ]; then
  run=(--backbones resnet18 --seeds 0 --minutes 0.05 --batch-size 4 --input-size 64 --labelled 30 --test-limit 32
       --linear-epochs 1 --finetune-epochs 1 --jobs 1)
else
  run=(--seeds 0 1 2 --minutes 1 --batch-size 256 --amp --jobs 4)
fi
[ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
start=$(date +%s)
"$python" tools/compare.py --out "$out" --report "$report" "${run[@]}" --stop-after "$stop_after"
echo "gpu_compare.sh: done in $(( $(date +%s) - start )) s"
if [ -n "${OUT:-}" ]; then  # the device tool brings back only what lies in $OUT
  tar -czf "$OUT/$(basename "$report" .md).tar.gz" "$report" "${report%.md}"
fi
