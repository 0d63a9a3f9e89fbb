# Director's everyday commands. Everything runs as root on a Debian 12 machine; `make setup` prepares it.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV := .venv
PYTHON := $(VENV)/bin/python
PACKAGES := api cli controller orchestrator reconcilers shell specs store ui scripts
PYTEST_ARGS ?= -q
DIRECTOR_INSTANCE ?= director

.PHONY: help setup test lint run bench fuzz clean

help:
	@echo "make setup   install packages, start Docker in swarm mode, create .venv, build the local images"
	@echo "make test    run the test suite (PYTEST_ARGS='-q -k name' to narrow it)"
	@echo "make lint    ruff, mypy (strict) and the import-linter layer contracts"
	@echo "make run     setup, validate examples/, then start Director"
	@echo "make bench   run every benchmark in bench/"
	@echo "make fuzz    hostile requests against a live API, FUZZ_EXAMPLES per caller (default 3000)"
	@echo "make clean   remove instance '$(DIRECTOR_INSTANCE)''s Docker objects, test leftovers and ./var"

setup:
	bash scripts/setup.sh

$(PYTHON):
	bash scripts/setup.sh

# pytest's exit 5 (no tests collected) means a broken test path or marker filter, never a pass.
test: $(PYTHON)
	@status=0; $(VENV)/bin/pytest $(PYTEST_ARGS) tests/ || status=$$?; \
	if [[ $$status -eq 5 ]]; then echo "make test: pytest collected no tests" >&2; fi; \
	exit $$status

# All three checks run even when one fails, so one pass shows every problem.
lint: $(PYTHON)
	@status=0; \
	echo "==> ruff check"; $(VENV)/bin/ruff check . || status=1; \
	echo "==> mypy $(PACKAGES)"; $(VENV)/bin/mypy $(PACKAGES) || status=1; \
	echo "==> lint-imports"; $(VENV)/bin/lint-imports || status=1; \
	exit $$status

# dirctl goes on the PATH (a link into the venv) so that `dirctl get sites` works right after, in any shell.
run: setup
	$(VENV)/bin/dirctl apply --dry-run=client -f examples/
	@if [[ ! -e /usr/local/bin/dirctl || -L /usr/local/bin/dirctl ]]; then \
		ln -sfn "$(CURDIR)/$(VENV)/bin/dirctl" /usr/local/bin/dirctl; \
	fi
	exec $(VENV)/bin/director run --examples examples

bench: $(PYTHON)
	@found=0; for script in bench/*.py; do \
		module=$$(basename "$$script" .py); [[ $$module == __init__ ]] && continue; \
		found=1; echo "==> bench.$$module"; $(PYTHON) -m "bench.$$module"; \
	done; \
	if [[ $$found -eq 0 ]]; then echo "make bench: no benchmarks in bench/" >&2; exit 1; fi

# The long run of the property-based API test (tests/api/test_api_fuzz.py runs a bounded one): every distinct
# finding with the request that showed it; exits 1 if there was any.
FUZZ_EXAMPLES ?= 3000
fuzz: $(PYTHON)
	$(PYTHON) -m bench.fuzz --examples $(FUZZ_EXAMPLES)

# Removes only what is Director's by label: the instance's managed objects and the leftovers of test runs
# whose process is gone (a running test session keeps its objects). Images are kept: rebuilding costs a minute.
clean:
	@if [[ -x $(PYTHON) ]]; then \
		$(PYTHON) scripts/docker_cleanup.py --instance "$(DIRECTOR_INSTANCE)"; \
	else \
		echo "make clean: no $(VENV); Docker objects left alone" >&2; \
	fi
	rm -rf var
