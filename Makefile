# hiermae: every target installs what it needs first (.venv at the repository root; quick when nothing changed).
#   core stack (`make demo`, `make bench`): torch, timm, mmengine, spconv, fvcore, ... about 2 minutes
#   full stack (`make install`, `make test`): core + tests + mmcv compiled with its ops, mmdet, mmseg
PY := .venv/bin/python
DEMO_CONFIG := configs/pretrain/hiermae_convnext_atto_128px_fashionmnist.py
DEMO_DIR := work_dirs/demo

.PHONY: install install-core install-transfer demo test test-slow lint bench

install:
	bash tools/install.sh full

install-transfer: install

install-core:
	bash tools/install.sh core

demo: install-core
	$(PY) tools/demo.py $(DEMO_CONFIG) --work-dir $(DEMO_DIR)

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	.venv/bin/ruff check .

bench: install-core
	$(PY) benchmarks/sparse_vs_dense.py --backbones resnet50,convnext_tiny,swin_tiny_patch4_window7_224,vit_small_patch16_224 --input 224 --batch 8 --mask-ratio 0.75
