# Entry points for people and CI. `make demo` and `make test` are the two
# Quick start commands; both install what they need first (scripts/bootstrap.sh).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: bootstrap demo up down status top loop test fuzz consistency model-selection test-fast lint lock stack-up stack-down stack-status schemas

bootstrap:
	@bash scripts/bootstrap.sh

## Start the local stack, simulate transactions, replay a slice, show what happened.
## FEATURE_REPO=examples/feature_repos/payments FEATURE_SET=payments: serve another feature set.
demo: bootstrap
	@$(VENV)/bin/rtml demo $(if $(FEATURE_REPO),--feature-repo $(FEATURE_REPO)) $(if $(FEATURE_SET),--feature-set $(FEATURE_SET))

## The whole platform (stack, champion, every service) supervised, in the background; `make down` stops it.
up: bootstrap
	@$(VENV)/bin/rtml up

down: bootstrap
	@$(VENV)/bin/rtml down

status: bootstrap
	@$(VENV)/bin/rtml status

## Live view of the running platform (from Prometheus).
top: bootstrap
	@$(VENV)/bin/rtml top

## The closed retraining loop end to end: drift -> retrain -> shadow -> graduation.
loop: bootstrap
	@$(VENV)/bin/rtml loop

## The whole test suite (unit + integration against real local servers).
test: bootstrap
	@$(PY) -m pytest -q

## The fuzz suite with a larger budget (`make test` runs it bounded, seeded, as CI does).
fuzz: bootstrap
	@RTML_FUZZ_EXAMPLES=$${RTML_FUZZ_EXAMPLES:-300} RTML_FUZZ_RECORDS=$${RTML_FUZZ_RECORDS:-100000} \
		$(PY) -m pytest tests/fuzz -q -s

## Decision-time features against the batch engine end to end at a larger size (`make test`: 20,000 decisions).
consistency: bootstrap
	@RTML_CONSISTENCY_DECISIONS=$${RTML_CONSISTENCY_DECISIONS:-100000} \
		$(PY) -m pytest tests/test_online_offline_consistency.py -q -s

## Model selection and feature ablation on the default data (~25 min on 2 cores): the figures of
## docs/training.md, rewritten in docs/benchmarks.md ("Model selection", "Feature ablation").
model-selection: bootstrap
	@$(PY) bench/model_selection.py
	@$(PY) bench/feature_ablation.py

## Unit tests only (no servers).
test-fast: bootstrap
	@$(PY) -m pytest -q -m "not integration"

## The fault suite at full size (bigger replays, 3 faults per case, ~16 min); writes docs/reliability-report.md.
chaos: bootstrap
	@RTML_FAULTS_PROFILE=chaos RTML_FAULTS_REPORT=docs/reliability-report.md $(PY) -m pytest tests/faults -q --timeout=1800

lint: bootstrap
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/mypy $$(ls -d libs/*/rtml_* services/*/rtml_* | grep -v egg-info)

## Regenerate the exported JSON Schemas after changing an event.
schemas: bootstrap
	@$(VENV)/bin/rtml-export-schemas

## Pin the resolved versions of the current venv (commit the result).
lock:
	@$(PY) -m pip freeze --exclude-editable | grep -v '^-e' > requirements/constraints.txt
	@echo "wrote requirements/constraints.txt"

stack-up: bootstrap
	@$(VENV)/bin/rtml stack up

stack-down:
	@$(VENV)/bin/rtml stack down

stack-status:
	@$(VENV)/bin/rtml stack status
