# hiermae: `make demo` and `make test` install first when needed (.venv at the repository root).
PY := .venv/bin/python
DEMO_CONFIG := configs/pretrain/hiermae_convnext_atto_128px_fashionmnist.py
DEMO_DIR := work_dirs/demo

.PHONY: install demo test test-slow lint bench

install:
	bash tools/install.sh

demo: install
	$(PY) tools/demo.py $(DEMO_CONFIG) --work-dir $(DEMO_DIR)

test: install
	$(PY) -m pytest -q -m "not slow"

test-slow: install
	$(PY) -m pytest -q -m slow

lint: install
	.venv/bin/ruff check .

bench: install
	$(PY) benchmarks/sparse_vs_dense.py --backbones resnet50,convnext_tiny,swin_tiny_patch4_window7_224,vit_small_patch16_224 --input 224 --batch 8 --mask-ratio 0.75
