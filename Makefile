# Two entry points: `make run` and `make test`. Both install what is missing first, idempotently.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEBIAN_PACKAGES := redis-server redis-sentinel redis-tools postgresql wrk prometheus prometheus-alertmanager patroni etcd-server chromium chromium-driver
STAMP := $(VENV)/.installed

.PHONY: help install run test lint typecheck pytest down clean

help:
	@echo "make run    install what is missing, start the local stack and stay attached (Ctrl-C stops it)"
	@echo "make test   install what is missing, then lint, type-check and run every test"

install: $(STAMP)
	@missing=""; for p in $(DEBIAN_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(STAMP): pyproject.toml tools/pyproject.toml
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]' -e ./tools  # the services, then the operator tools
	@touch $@

run: install
	$(BIN)/kubernaut up --foreground --with-alerting

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

pytest: install
	$(BIN)/pytest

test: lint typecheck pytest

down:
	$(BIN)/kubernaut down

clean:
	rm -rf $(VENV) .run .mypy_cache .ruff_cache .pytest_cache
