# Three stages of one chat system, for a course on threads and the proactor pattern.
# `make help` lists the targets. Variables you may override, e.g.:
#   make server_a PORT=9000      make test PYTEST_ARGS='-k framer -x'
PYTHON      ?= python3
VENV        ?= .venv
HOST        ?= 127.0.0.1
PORT        ?= 9034
PYTEST_ARGS ?=
SERVER      ?=
CLIENT      ?=
GRADE_ARGS  ?=

VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PYTEST := $(VPY) -m pytest -p no:cacheprovider $(PYTEST_ARGS)

.PHONY: help
help:
	@echo "Graders, start here:"
	@echo "  make section_a   watch the stage A demo, then run the stage A tests"
	@echo "  make section_b   watch the stage B (proactor) demo, then its tests"
	@echo "  make section_c   watch the stage C demo (chat on the proactor), then its tests"
	@echo "  make test        set up $(VENV) with the pinned dev tools, run the whole suite"
	@echo "By hand (several terminals):"
	@echo "  make server_a    stage A server on $(HOST):$(PORT)"
	@echo "  make server_c    stage C server on $(HOST):$(PORT)"
	@echo "  make client      terminal client for $(HOST):$(PORT)  (or: nc $(HOST) $(PORT))"
	@echo "Also:"
	@echo "  make test_a, test_b, test_c   one stage's tests"
	@echo "  make diff        what the proactor changed: stage A server vs stage C server"
	@echo "  make stress      the stress suite at full size (long)"
	@echo "  make bench       A, C, an asyncio baseline and two reference relays (~15 min)"
	@echo "  make grade SERVER='./server {port}' [CLIENT='./client {host} {port}']"
	@echo "                   grade any server and client of the assignment (README: Grading any implementation)"
	@echo "  make grade       grade ours: stage A, stage C and the client, which score full marks"
	@echo "  make lint        ruff and mypy"
	@echo "  make mutate      mutation testing of the pure modules (mutmut; docs/mutation.md)"
	@echo "  make clean       remove $(VENV) and caches"

# The venv is a stamp that depends on the pinned requirements: a failed install
# leaves no stamp and is retried; a changed requirement is installed again.
$(VPY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements-dev.txt | $(VPY)
	$(VPY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

# ---------------------------------------------------------------- stage A
.PHONY: section_a
section_a: demo_a test_a

.PHONY: demo_a
demo_a:
	$(PYTHON) -m demo --server section_a.server

.PHONY: test_a
test_a: $(STAMP)
	$(PYTEST) -m "stage_a and not stage_c"

.PHONY: server_a
server_a:
	$(PYTHON) -m section_a.server --host $(HOST) --port $(PORT)

.PHONY: client
client:
	$(PYTHON) -m section_a.client --host $(HOST) --port $(PORT)

# ---------------------------------------------------------------- stage B
.PHONY: section_b
section_b: demo_b test_b

.PHONY: demo_b
demo_b:
	$(PYTHON) -m section_b.demo

.PHONY: test_b
test_b: $(STAMP)
	$(PYTEST) -m stage_b

# ---------------------------------------------------------------- stage C
.PHONY: section_c
section_c: demo_c test_c

.PHONY: demo_c
demo_c:
	$(PYTHON) -m demo --server section_c.server

.PHONY: test_c
test_c: $(STAMP)
	$(PYTEST) -m stage_c

.PHONY: server_c
server_c:
	$(PYTHON) -m section_c.server --host $(HOST) --port $(PORT)

# What the proactor changed, for instructors: the two servers side by side.
.PHONY: diff
diff:
	@diff -u section_a/server.py section_c/server.py; true

# ---------------------------------------------------------------- everything
.PHONY: test
test: $(STAMP)
	$(PYTEST)

# Stage A, stage C, an asyncio baseline and two reference relays measured side by side in one
# run (about 15 minutes); the table goes to stdout and bench/results/latest.md, the plot to
# latest.png. The C relay and the C load generator are built with cc when there is one.
.PHONY: bench
bench: $(STAMP)
	$(VPY) -m bench.run

# The grader (README: Grading any implementation): any submission's server and client, or with neither given,
# ours: stage A, stage C and the client, all held to full marks (--all-required), as CI runs it.
OURS := --all-required \
	--server '$(PYTHON) -m section_a.server --port {port}' \
	--server '$(PYTHON) -m section_c.server --port {port}' \
	--client '$(PYTHON) -m section_a.client --host {host} --port {port}'

.PHONY: grade
grade:
ifeq ($(SERVER)$(CLIENT),)
	$(PYTHON) -m grader $(OURS) $(GRADE_ARGS)
else
	$(PYTHON) -m grader $(if $(SERVER),--server '$(SERVER)') $(if $(CLIENT),--client '$(CLIENT)') \
		$(GRADE_ARGS)
endif

# The stress suite at full size: 10,000 clients where descriptors allow, long runs.
.PHONY: stress
stress: $(STAMP)
	STRESS=full $(PYTEST) -m stress

.PHONY: lint
lint: $(STAMP)
	$(VPY) -m ruff check .
	$(VPY) -m ruff format --check .
	$(VPY) -m mypy

# Mutation testing (docs/mutation.md; CI runs it, about a minute): mutmut changes the pure
# modules one mutant at a time ([tool.mutmut] in pyproject.toml says which, and their tests)
# and runs their tests against each. It works in a fresh copy under build/ (git ignores it)
# that holds every package the tests may import (tests/conftest.py imports harness/, say).
# Then every mutant not killed must be listed as equivalent in docs/mutation.md, or it fails.
MUTATE_COPY := section_a section_b section_c harness tests conftest.py pyproject.toml

.PHONY: mutate
mutate: $(STAMP)
	rm -rf build/mutate
	mkdir -p build/mutate
	cp -R $(MUTATE_COPY) build/mutate/
	cd build/mutate && $(abspath $(VPY)) -m mutmut run > run.log 2>&1 \
		|| { tail -40 run.log; echo "mutmut failed: see build/mutate/run.log"; exit 1; }
	$(VPY) .ci/check_mutants.py build/mutate docs/mutation.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis bench/build
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
