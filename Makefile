# The two commands: `make run` (set up, run the pipeline on the demo catalog) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)
export GX_ANALYTICS_ENABLED := False
export DVC_NO_ANALYTICS := 1

.PHONY: setup browser run ablation airflow test lint bench clean help

help:
	@echo "make run    set up .venv and run the pipeline (dvc repro) on params.yaml's catalog"
	@echo "make ablation  retrain one model per input variant and seed (about 30 min on the demo)"
	@echo "make airflow   Airflow 3 (standalone, SQLite) with the vlclip DAGs on 127.0.0.1:$(AIRFLOW_PORT)"
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
	@echo "The pipeline's model against its untrained start, test split, whole catalog:"
	@$(BIN)/dvc metrics show reports/metrics.json
	@echo
	@if [ -f reports/ablation.md ]; then \
	  echo "Last retrained ablation (reports/ablation.md; rerun with make ablation):"; \
	  cat reports/ablation.md; \
	else \
	  echo "No retrained ablation yet: make ablation (about 30 min on 2 CPU cores)"; \
	fi
	@echo
	@echo "metrics:     reports/metrics.json (dvc metrics show; dvc plots show)"
	@echo "plots:       reports/plots/hits_at_k.csv, training curves in reports/train/"
	@echo "data gate:   reports/validation/validation.json and Data Docs under reports/validation/gx/"
	@echo "model:       models/model.pt   index: index/catalog.faiss"
	@echo "try:         $(VENV)/bin/vlclip recommend demo-00000  |  $(VENV)/bin/vlclip search 'red soda can'"

# Airflow for one machine: the embedded database and executor (`airflow standalone`), our dags/,
# examples off, bound to 127.0.0.1. Production (PostgreSQL, Celery workers): docker/.
AIRFLOW_HOME ?= $(CURDIR)/.airflow
AIRFLOW_PORT ?= 8080
AIRFLOW_ENV = AIRFLOW_HOME=$(AIRFLOW_HOME) AIRFLOW__CORE__DAGS_FOLDER=$(CURDIR)/dags \
	AIRFLOW__CORE__LOAD_EXAMPLES=False AIRFLOW__API__HOST=127.0.0.1 \
	AIRFLOW__API__PORT=$(AIRFLOW_PORT) AIRFLOW__API__BASE_URL=http://127.0.0.1:$(AIRFLOW_PORT) \
	AIRFLOW__CORE__EXECUTION_API_SERVER_URL=http://127.0.0.1:$(AIRFLOW_PORT)/execution/ \
	AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin VLCLIP_REPO=$(CURDIR)

airflow: setup
	$(AIRFLOW_ENV) $(BIN)/airflow db migrate >/dev/null
	$(AIRFLOW_ENV) $(BIN)/airflow pools set vlclip_dvc 1 "DVC holds a repository lock" >/dev/null
	@echo
	@echo "Airflow UI: http://127.0.0.1:$(AIRFLOW_PORT)  user: admin"
	@echo "password:   printed below, and in $(AIRFLOW_HOME)/simple_auth_manager_passwords.json.generated"
	@echo "retrain:    open the DAG vlclip_retrain, press Trigger, change values, Trigger"
	@echo
	$(AIRFLOW_ENV) $(BIN)/airflow standalone

# One model per input variant and seed, reusing the pipeline's crops and texts (DVC caches runs).
ablation: setup
	$(BIN)/dvc repro ablation/dvc.yaml
	@echo
	@cat reports/ablation.md

# The browser test drives Debian's chromium (Playwright's own download needs the internet).
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser test"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "note: no chromium; the browser test is skipped (sudo apt-get install chromium)"; \
	  fi; }

test: setup browser
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests bench dags

bench: setup
	$(BIN)/python -m bench

clean:
	rm -rf data models index reports monitoring
