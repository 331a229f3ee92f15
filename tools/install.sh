#!/usr/bin/env bash
# Create .venv at the repository root with the pinned stack; quick when nothing changed.
#   tools/install.sh core   what pretraining and `make demo` need (about 2 minutes on a fresh machine)
#   tools/install.sh full   core + tests + the transfer stack: mmcv compiled with its CPU ops, mmdet, mmseg
set -euo pipefail
cd "$(dirname "$0")/.."
part=${1:-full}
core_inputs="requirements/constraints.txt requirements/core.txt setup.py tools/install.sh"
case "$part" in
  core) inputs=$core_inputs ;;
  full) inputs="$core_inputs requirements/transfer.txt requirements/dev.txt" ;;
  *) echo "install: unknown part '$part' (valid: core, full)" >&2; exit 2 ;;
esac
start=$(date +%s)
stamp=.venv/.hiermae-installed-$part
digest() { cat "$@" | sha256sum; }
# shellcheck disable=SC2086
if [ -f "$stamp" ] && [ "$(digest $inputs)" = "$(cat "$stamp")" ]; then
  echo "install: .venv has the $part stack ($(( $(date +%s) - start )) s)"
  exit 0
fi
# Debian data: Fashion-MNIST (the embedded pretraining data); photo cut-outs for the detection scenes (full only).
debs=""
[ -d /usr/share/datasets/fashion-mnist ] || debs="$debs dataset-fashion-mnist"
[ "$part" = full ] && [ ! -d /usr/share/tuxpaint/stamps ] && debs="$debs tuxpaint-stamps-default"
if [ -n "$debs" ]; then
  echo "install: Debian packages$debs"
  # shellcheck disable=SC2086
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
echo "install: $part stack"
quiet "${pip[@]}" -r requirements/core.txt
quiet "${pip[@]}" --no-build-isolation --no-deps -e .
check="import torch, torchvision, timm, mmengine, spconv.pytorch, fvcore, webdataset, tifffile"
if [ "$part" = full ]; then
  quiet "${pip[@]}" setuptools wheel ninja
  # mmcv ships only as an sdist: compile its CPU ops against the venv's torch (pip caches the built wheel).
  echo "install: compiling mmcv's ops (about 5 minutes on 2 cores; pip caches the wheel for the next time)"
  quiet env MMCV_WITH_OPS=1 FORCE_CUDA=0 MAX_JOBS=2 CFLAGS=-g0 "${pip[@]}" --no-build-isolation mmcv
  quiet "${pip[@]}" -r requirements/transfer.txt -r requirements/dev.txt
  check="$check, mmcv.ops, mmdet, mmseg, pycocotools, skimage, pytest"
fi
.venv/bin/python -c "$check; print('install: torch', torch.__version__, 'timm', timm.__version__, 'imports ok')"
# shellcheck disable=SC2086
digest $core_inputs > .venv/.hiermae-installed-core  # a full install holds the core stack too
# shellcheck disable=SC2086
digest $inputs > "$stamp"
echo "install: $part stack done in $(( $(date +%s) - start )) s"
