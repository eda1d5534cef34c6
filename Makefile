# One-command set-up: every target creates .venv when it is missing.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
DEMO_OUT ?= runs/demo

.PHONY: demo test lint bench install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1" || $(BIN)/pip install -q torch torchvision
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/avcl demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests scripts
	$(BIN)/ruff format --check src tests scripts

test: lint
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/avcl bench loader --out runs/bench
	$(BIN)/avcl bench loader --out runs/bench/b64 --cache runs/bench/cache --batch-size 64 --source-seconds 0
	$(BIN)/python scripts/sample_profile.py runs/bench/cache
	$(BIN)/avcl bench train --out runs/bench

clean:
	rm -rf runs build *.egg-info src/*.egg-info
