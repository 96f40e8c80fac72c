# Reelcast: `make run` starts the platform on the embedded defaults; `make test` runs the suite.
# Both work on a fresh clone with only Python 3.11: they create .venv and install what they need.

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
DEPS_HASH := $(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: run manage test test-fast bench lint format install-run install-dev clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The web/worker install: no torch (the preview backend runs on the CPU).
$(VENV)/.run-$(DEPS_HASH): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e .
	@touch $@
install-run: $(VENV)/.run-$(DEPS_HASH)

# Tests and benches also need the gpu extra (tiny Wan pipelines run on the CPU) and dev tools.
$(VENV)/.dev-$(DEPS_HASH): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e '.[dev,gpu,s3]'
	@touch $@
install-dev: $(VENV)/.dev-$(DEPS_HASH)

# exec: the SIGTERM that make passes on to its child reaches the script, which stops both.
run: install-run
	HOST=$(HOST) PORT=$(PORT) BIN=$(BIN) exec bash platform/deploy/run-local.sh

# Any manage.py command on this checkout, e.g. make manage ARGS="createoperator alice": the same
# var/local.env as `make run` (written here too if missing), and the same public URL.
manage: install-run
	@BIN=$(BIN) bash platform/deploy/local-env.sh
	@REELCAST_PUBLIC_URL=$${REELCAST_PUBLIC_URL:-http://$(HOST):$(PORT)} $(BIN)/python manage.py $(ARGS)

test: install-dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The references some benchmarks compare against (never needed to run the platform):
# invisible-watermark's dwtDct (installed without its unpinned torch) and faiss-cpu.
bench: install-dev
	$(BIN)/pip install -q --no-deps invisible-watermark && $(BIN)/pip install -q PyWavelets faiss-cpu
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install-dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) var
