# clm: two commands. `make demo` runs a real continual-learning cycle; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export CLM_HOME ?= $(CURDIR)/.clm
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DS_ACCELERATOR := cpu
export PYTHONUNBUFFERED := 1
# Test processes: the e2e stack (mostly waiting on Airflow) runs on one while the other runs every other file.
TEST_WORKERS ?= 2

.PHONY: demo test lint install browser up down status clean

# The virtualenv is rebuilt when the pins or the package metadata change.
$(STAMP): setup.py constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found (clm needs Python 3.11)"; exit 2; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[train,k8s,dev]'
	touch $@

install: $(STAMP)

# UI tests drive Debian's Chromium; test tools must never download a browser of their own.
browser:
	@if ! command -v chromium >/dev/null; then \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) browser lint
	$(BIN)/python -m pytest -m "" tests -p no:cacheprovider -n $(TEST_WORKERS) --no-loadscope-reorder --durations=30

demo: $(STAMP)
	$(BIN)/clm demo

up: $(STAMP)
	$(BIN)/clm up

down:
	@if [ -x $(BIN)/clm ]; then $(BIN)/clm down; fi

status: $(STAMP)
	$(BIN)/clm status

clean: down
	rm -rf $(CLM_HOME)
