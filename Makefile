# The map of the pipeline: each stage is a target, and each depends on the files the one before it writes.
#   make demo                    whole chain on the embedded demo competition (offline)
#   make tune -> make train ARCH=cnn -> make predict -> make submit
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
KIP         := $(BIN)/kip
COMPETITION ?= digits-demo
ARCH        ?= cnn
EPOCHS      ?=
SET         ?=
TRIALS      ?= 10
MINUTES     ?=
STORAGE     ?=
RUNS        ?=
FILE        ?=
MESSAGE     ?=
PYTEST_ARGS ?=

INSTALLED   := $(VENV)/.installed
DATA_READY  := data/raw/$(COMPETITION).ready
LATEST_RUN  := runs/latest-$(COMPETITION).txt
LATEST_SUB  := submissions/latest-$(COMPETITION).txt
TRAIN_ARGS   = --competition $(COMPETITION) --arch $(ARCH) $(if $(EPOCHS),--set epochs=$(EPOCHS)) $(foreach s,$(SET),--set $(s))

.PHONY: help venv demo data report bench-load train tune predict submit test test-fast clean

help: ## list every target with a one-line description
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'
	@echo "  variables: COMPETITION=$(COMPETITION) ARCH=$(ARCH) EPOCHS= SET='name=value ...' TRIALS= MINUTES= STORAGE= RUNS= FILE= MESSAGE="

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

venv: $(INSTALLED) ## create .venv and install the package with its test tools

demo: $(INSTALLED) ## data -> train -> predict -> score on the embedded digits demo, offline
	$(KIP) demo --competition digits-demo --arch $(ARCH) $(if $(EPOCHS),--set epochs=$(EPOCHS)) $(foreach s,$(SET),--set $(s))

$(DATA_READY): | $(INSTALLED)
	$(KIP) data --competition $(COMPETITION)

data: $(INSTALLED) ## get data/raw/<slug>/ (download, build or detect), check it, cache arrays in data/cache/<slug>/
	$(KIP) data --competition $(COMPETITION)

report: $(DATA_READY) ## data report: counts, sizes/modes, blank and duplicate images -> reports/<slug>/data.md
	$(KIP) report --competition $(COMPETITION)

bench-load: $(INSTALLED) ## images/s: plain skimage loop vs our cold load vs cached reload (20000 PNGs in data/bench/)
	$(BIN)/python -m pipelines.bench_load

$(LATEST_RUN): $(DATA_READY)
	$(KIP) train $(TRAIN_ARGS)

train: $(DATA_READY) ## train ARCH=cnn|resnet10 (uses tuned parameters when present) -> runs/<arch>-<time>/
	$(KIP) train $(TRAIN_ARGS)

tune: $(DATA_READY) ## Optuna search over optimizer, learning rate, epochs (TRIALS=, MINUTES=, STORAGE=)
	$(KIP) tune $(TRAIN_ARGS) --trials $(TRIALS) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(STORAGE),--storage '$(STORAGE)')

$(LATEST_SUB): $(LATEST_RUN)
	$(KIP) predict --competition $(COMPETITION) $(if $(RUNS),--runs $(RUNS))

predict: $(LATEST_RUN) ## predict the test split with the newest run (or RUNS="a b") -> submissions/<run>.csv
	$(KIP) predict --competition $(COMPETITION) $(if $(RUNS),--runs $(RUNS))

submit: $(LATEST_SUB) ## upload the newest submission (or FILE=, MESSAGE=) with the kaggle client
	$(KIP) submit --competition $(COMPETITION) $(if $(FILE),--file '$(FILE)') $(if $(MESSAGE),--message '$(MESSAGE)')

test: $(INSTALLED) ## run the whole test suite (creates .venv if missing)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## the test suite without the slow end-to-end runs
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

clean: ## remove generated data, runs, reports and submissions (keeps .venv and tuning studies)
	rm -rf data runs reports submissions/*.csv submissions/*.json submissions/*.txt
