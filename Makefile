# Everything runs from the virtual environment in .venv/, created on first use by `make setup`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
KERAS_HUB := keras-hub==0.32.0 tokenizers==0.23.3
KECAM     := keras-cv-attention-models==1.4.3

MODEL  ?=
CONFIG ?=
OUT    ?=
PYTEST_ARGS ?=
ZOO     ?= configs/zoos/smoke.yaml
WORKERS ?=
BASELINE ?=
EXECUTOR ?= local

.PHONY: setup convert verify zoo test test-fast sweep sweep-full sweep-training ops-page bench bench-large docs check-install lint format clean

setup: $(STAMP)

# tf-keras (legacy Keras 2 .h5 support) is installed with --no-deps: its metadata requires the full
# `tensorflow` wheel, which would be installed beside tensorflow-cpu and provides the same modules.
# keras-hub (the keras_hub.* zoo ids, configs/zoos/kerashub.yaml) likewise: it requires
# tensorflow-text, which requires the full `tensorflow`; its backbones need neither that nor Kaggle.
# keras-cv-attention-models (the kecam.* zoo ids, a third-party Keras 2 model library) likewise.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir -e '.[dev,ray,kerashub,kecam,docs]'
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps tf-keras==2.21.0
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps $(KERAS_HUB)
	$(BIN)/python -m pip install --quiet --no-cache-dir --no-deps $(KECAM)
	touch $(STAMP)

# make convert                      -> the three demo models of the porting guide
# make convert MODEL=path/or/zoo-id [CONFIG=configs/models/x.yaml] [OUT=runs/x]
convert: setup
	$(BIN)/tf2torch convert $(MODEL) $(if $(CONFIG),--config $(CONFIG)) $(if $(OUT),--out $(OUT))

# make verify                      -> the demo CNN against its hand-written port (tests/ports/demo_ports.py)
# make verify MODEL=m.keras TORCH=port.py:Class [CONFIG=x.yaml] [OUT=runs/x] [SAVE=weights.safetensors]
TORCH ?=
SAVE  ?=
verify: setup
	$(BIN)/tf2torch verify $(or $(MODEL),demo.cnn) --torch $(or $(TORCH),tests/ports/demo_ports.py:CNN) \
		$(if $(CONFIG),--config $(CONFIG)) $(if $(OUT),--out $(OUT)) $(if $(SAVE),--save-weights $(SAVE))

# make zoo                         -> configs/zoos/smoke.yaml into runs/smoke
# make zoo ZOO=configs/zoos/keras-applications.yaml [WORKERS=2] [OUT=runs/x] [BASELINE=old/summary.json]
#          [EXECUTOR=ray] [PRUNE=1]
zoo: setup
	$(BIN)/tf2torch batch $(ZOO) --executor $(EXECUTOR) $(if $(WORKERS),--workers $(WORKERS)) \
		$(if $(OUT),--out $(OUT)) $(if $(BASELINE),--baseline $(BASELINE)) \
		$(if $(PRUNE),--prune)

# Benchmarks (figures, not tests): each stage's time and each worker's peak memory, the overhead
# against scripts/bench/minimal_convert.py (four stages and the whole conversion), inference latency
# (onnx2torch, native, torch.compile, onnxruntime, TF), model.py against torchvision's ResNet50 and
# MobileNetV2 (1 thread), batch wall time. Writes scripts/bench/results/<UTC time>.json and .md.
# make bench [PARTS=stages,overhead,latency,torchvision,keras_torch,export_memory,batch] [MODELS=cnn,resnet50] [REPEATS=3]
PARTS   ?=
MODELS  ?=
REPEATS ?=
bench: setup
	$(BIN)/python scripts/bench/run.py $(if $(PARTS),--parts $(PARTS)) $(if $(MODELS),--models $(MODELS)) \
		$(if $(REPEATS),--repeats $(REPEATS))

# A 2.7 GB model (10 x Dense(8192)) end to end through ONNX external data; time and peak memory.
bench-large: setup
	$(BIN)/python scripts/bench/large_model.py

# The whole suite, slow model-zoo tests included (what CI runs).
# The report render tests need a headless Chromium: installed here when missing (scripts/ensure_browser.sh).
test: setup
	scripts/ensure_browser.sh
	$(BIN)/pytest $(PYTEST_ARGS)

# Everyday selection: skips the tests marked slow.
test-fast: setup
	scripts/ensure_browser.sh
	$(BIN)/pytest -m "not slow" $(PYTEST_ARGS)

# docs/coverage.md: ONNX's backend node tests through the import stage, then one tiny TF function
# per op, layer and mode through export, validate and import, then tf2onnx's own backend tests
# (test_backend.py of the pinned tf2onnx's sdist, which pip downloads into ~/.cache/tf2torch) through
# onnxruntime, the importer and the project's whole chain; at opsets 17 and 18. Each exits 1 on a
# failure docs/coverage.md does not list. `make sweep` runs the deterministic eighth of tf2onnx's tests
# that CI runs (SUITE_PART=1/8); `make sweep-full` runs all of them.
SUITE_PART ?= 1/8
sweep: setup
	$(BIN)/python -m pipeline.coverage.import_sweep
	$(BIN)/python -m pipeline.coverage.export_sweep
	$(BIN)/python -m pipeline.coverage.tf2onnx_suite --part $(SUITE_PART)

sweep-full: setup
	$(BIN)/python -m pipeline.coverage.import_sweep
	$(BIN)/python -m pipeline.coverage.export_sweep
	$(BIN)/python -m pipeline.coverage.tf2onnx_suite

# train.py against Keras's own lists (optimizers x options, losses, regularizers, schedules); fails on
# a case docs/training.md does not list. CI runs it (tests/test_training_sweep.py, ~4 minutes).
sweep-training: setup
	$(BIN)/python -m pipeline.coverage.training_sweep

# docs/ops.md and pipeline/coverage/support_matrix.json (what `tf2torch ops` prints) from the sweeps.
ops-page: setup
	$(BIN)/python -m pipeline.coverage.support_matrix --write

# The documentation site from docs/, reference pages generated from the code; --strict: a broken link
# fails. Opens from disk: build/site/index.html.
docs: setup
	$(BIN)/python scripts/build_docs.py

# `pip install` of the wheel into a fresh Python 3.12 (or PYTHON=...) venv, then the demo conversion.
check-install:
	scripts/check_install.sh $(CHECK_PYTHON)

lint: setup
	$(BIN)/ruff check pipeline tests scripts
	$(BIN)/ruff format --check pipeline tests scripts

format: setup
	$(BIN)/ruff check --fix pipeline tests scripts
	$(BIN)/ruff format pipeline tests scripts

clean:
	rm -rf runs .pytest_cache build
