# Three stages of one chat system; `make help` lists what you can run.
# Variables you may override: make test PYTHON=python3.11 PYTEST_ARGS='-k framer'
PYTHON      ?= python3
VENV        ?= .venv
PORT        ?= 9034
HOST        ?= 127.0.0.1
PYTEST_ARGS ?=

VPY   := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST := $(VPY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: help
help:
	@echo "Stages:"
	@echo "  make section_a   demo of the threaded chat server, then its tests"
	@echo "  make test_a      stage A tests only"
	@echo "  make server_a    run the stage A server on $(HOST):$(PORT)"
	@echo "  make client      run the terminal client against $(HOST):$(PORT)"
	@echo "Everything:"
	@echo "  make test        set up .venv (pinned dev tools) and run the whole suite"
	@echo "  make lint        ruff and mypy"
	@echo "  make clean       remove the virtual environment and caches"

# The venv is a stamp that depends on the pinned requirements: a failed install
# leaves no stamp and is retried; a changed requirement is installed again.
$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements-dev.txt | $(VPY)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

.PHONY: test
test: $(STAMP)
	$(PYTEST)

.PHONY: lint
lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m mypy

.PHONY: clean
clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
