#!/usr/bin/env bash
# Create .venv at the repository root with the pinned stack; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
stamp=.venv/.hiermae-installed
inputs="requirements/constraints.txt requirements/runtime.txt requirements/dev.txt setup.py tools/install.sh"
if [ -f "$stamp" ] && [ "$(cat $inputs | sha256sum)" = "$(cat "$stamp")" ]; then
  echo "install: .venv is up to date ($(( $(date +%s) - start )) s)"
  exit 0
fi
# Debian data: Fashion-MNIST (the embedded pretraining data) and photo cut-outs for the detection scenes.
debs=""
[ -d /usr/share/datasets/fashion-mnist ] || debs="$debs dataset-fashion-mnist"
[ -d /usr/share/tuxpaint/stamps ] || debs="$debs tuxpaint-stamps-default"
if [ -n "$debs" ]; then
  echo "install: Debian packages$debs"
  apt-get install -y -qq --no-install-recommends $debs >/dev/null 2>&1 || \
    (apt-get update -qq && apt-get install -y -qq --no-install-recommends $debs >/dev/null)
fi
[ -x .venv/bin/python ] || python3.11 -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q -c requirements/constraints.txt)
# pip's configured local indexes warn once per package they lack: drop those lines, keep the exit status.
quiet() {
  set +e
  "$@" 2>&1 | grep -v "^WARNING: Location .* is ignored"
  local status=${PIPESTATUS[0]}
  set -e
  return "$status"
}
quiet "${pip[@]}" torch torchvision setuptools wheel ninja
# mmcv ships only as an sdist: compile its CPU ops against the venv's torch (pip caches the built wheel).
quiet env MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 CFLAGS=-g0 "${pip[@]}" --no-build-isolation mmcv
quiet "${pip[@]}" -r requirements/runtime.txt -r requirements/dev.txt
quiet "${pip[@]}" --no-build-isolation --no-deps -e .
.venv/bin/python -c "import torch, torchvision, timm, mmengine, mmcv.ops, mmdet, mmseg, spconv.pytorch, fvcore; \
print('install: torch', torch.__version__, 'timm', timm.__version__, 'mmcv', mmcv.__version__, 'spconv ok')"
cat $inputs | sha256sum > "$stamp"
echo "install: done in $(( $(date +%s) - start )) s"
