# The two commands: `make run` (set up, run the pipeline on the demo catalog) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := False
export DVC_NO_ANALYTICS := 1

.PHONY: setup run test lint bench clean help

help:
	@echo "make run    set up .venv and run the pipeline (dvc repro) on params.yaml's catalog"
	@echo "make test   set up .venv and run the tests"
	@echo "make lint   ruff"
	@echo "make bench  benchmarks; writes bench/results/ and the README table"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall only when the package metadata changed: a second `make run` skips this.
$(STAMP): pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/dvc repro
	@echo
	@echo "Ablation on the test split (HITS@5 and MRR per task):"
	@cat reports/ablation.md
	@echo
	@echo "metrics:     reports/metrics.json, reports/ablation.md (dvc metrics show; dvc plots show)"
	@echo "plots:       reports/plots/hits_at_k.csv, training curves in reports/train/"
	@echo "data gate:   reports/validation/validation.json and Data Docs under reports/validation/gx/"
	@echo "model:       models/model.pt   index: index/catalog.faiss"
	@echo "try:         $(VENV)/bin/vlclip recommend demo-00000  |  $(VENV)/bin/vlclip search 'red soda can'"

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench dags

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf data models index reports monitoring
