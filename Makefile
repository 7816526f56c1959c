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
TRIALS      ?=
MINUTES     ?=
STORAGE     ?=
WORKERS     ?= 1
SCHEDULER   ?=
SPACE       ?=
PRUNER      ?= sha
FIDELITY    ?=
CHECK       ?=
FINAL_MINUTES ?=
HOLDOUT     ?=
RECIPES     ?=
VARIANTS    ?=
SEEDS       ?=
FIDELITIES  ?=
empty       :=
space       := $(empty) $(empty)
STUDY       ?=
RUNS        ?=
FILE        ?=
WEIGHTS     ?=
TTA         ?=
TUNED       ?=
FOLDS       ?= 5
BUDGET      ?=
FOLDS_FROM  ?=
RUN         ?=
REFIT       ?=
PSEUDO_THRESHOLD ?=
SUBMISSION_HEADER ?=
IMAGE       ?=
MESSAGE     ?=
PYTEST_ARGS ?=
# pytest-xdist processes for `make test`, given a test file at a time (module fixtures such as the loopback Dask
# cluster start once). Three on two cores: a test mostly runs on one core (TensorFlow start-up and graph tracing)
# or waits on the commands and clusters it starts
TEST_WORKERS ?= 3

INSTALLED   := $(VENV)/.installed
# data/, runs/ and submissions/ live under KIP_HOME when it is set (as kip itself reads it), else here
HOME_DIR    := $(or $(KIP_HOME),.)
DATA_READY  := $(HOME_DIR)/data/raw/$(COMPETITION).ready
LATEST_RUN  := $(HOME_DIR)/runs/latest-$(COMPETITION).txt
LATEST_SUB  := $(HOME_DIR)/submissions/latest-$(COMPETITION).txt
TRAIN_ARGS   = --competition $(COMPETITION) --arch $(ARCH) $(if $(EPOCHS),--set epochs=$(EPOCHS)) $(if $(WEIGHTS),--set weights=$(WEIGHTS)) $(foreach s,$(SET),--set $(s)) \
	$(if $(PSEUDO_THRESHOLD),--set pseudo_threshold=$(PSEUDO_THRESHOLD))
# make train (and the implicit training behind make predict / make submit) honours MINUTES= and TUNED=
FIT_ARGS     = $(TRAIN_ARGS) $(if $(MINUTES),--set minutes=$(MINUTES)) $(if $(TUNED),--tuned $(TUNED))
# make cv, tune, compete: folds and trials on a Dask scheduler's workers, a local cluster of WORKERS=N processes, or here
CLUSTER_ARGS = $(if $(SCHEDULER),--scheduler '$(SCHEDULER)') --workers $(WORKERS)
PREDICT_ARGS = --competition $(COMPETITION) $(if $(RUNS),--runs $(RUNS)) $(if $(TTA),--tta $(TTA)) $(if $(IMAGE),--image '$(IMAGE)') \
	$(if $(SUBMISSION_HEADER),--submission-header '$(SUBMISSION_HEADER)')

.PHONY: help venv demo data report train cv refit blend compete tune tune-report predict submit check-submission submissions lint format test test-fast \
	clean clean-tuning bench bench-load bench-train bench-tune bench-scale bench-tune-transfer bench-fidelity bench-recipe

help: ## list every target with a one-line description
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "} {printf "  %-18s %s\n", $$1, $$2}'
	@echo "  variables: COMPETITION=$(COMPETITION) ARCH=$(ARCH) EPOCHS= SET='name=value ...' MINUTES= TRIALS= WORKERS= STORAGE= SPACE= PRUNER= STUDY="
	@echo "             FIDELITY='minutes=3 subset=0.5 scale=1' CHECK='top=2 budget=0.5 margin=0.005'"
	@echo "             benchmarks: FINAL_MINUTES= HOLDOUT= (bench-tune-transfer) RECIPES= FIDELITIES='a;b' (bench-fidelity) VARIANTS='a=1;b=2' SEEDS= (bench-recipe)"
	@echo "             RUNS= TTA= IMAGE= WEIGHTS= FILE= MESSAGE= TUNED=1|0 SUBMISSION_HEADER=id,label"
	@echo "             FOLDS= BUDGET= FOLDS_FROM= RUN= REFIT=1 (make compete) PSEUDO_THRESHOLD= (with SET=pseudo_labels=<run or cv folder>)"
	@echo "             SCHEDULER=tcp://host:8786 (make cv/tune/compete on a Dask cluster) or WORKERS=N (a local one)"

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
	$(KIP) train $(FIT_ARGS)

train: $(DATA_READY) ## train ARCH=cnn|resnet10|mobilenetv2 in MINUTES= (default 18; WEIGHTS=; TUNED=1|0) -> runs/<arch>-<time>/
	$(KIP) train $(FIT_ARGS)

cv: $(DATA_READY) ## k-fold CV over every labelled image (FOLDS=5, MINUTES= per fold or BUDGET= in all, FOLDS_FROM=, SCHEDULER=, WORKERS=) -> runs/cv-<arch>-<time>/
	$(KIP) cv $(FIT_ARGS) --folds $(FOLDS) $(if $(BUDGET),--budget $(BUDGET)) $(if $(FOLDS_FROM),--folds-from '$(FOLDS_FROM)') $(CLUSTER_ARGS)

compete: $(DATA_READY) ## MINUTES=120: plan the budget (a CV per architecture from 240 min, else one run each), blend, TTA, submission; resumable (REFIT=1, SCHEDULER=, WORKERS=)
	$(if $(MINUTES),,$(error give the budget: make compete MINUTES=120))
	$(KIP) compete --competition $(COMPETITION) --minutes $(MINUTES) $(if $(filter 1,$(REFIT)),--refit) $(foreach s,$(SET),--set $(s)) $(CLUSTER_ARGS)

refit: $(INSTALLED) ## RUN=<run or cv folder>: its settings trained on every labelled image, for the epochs it found -> submission -refit
	$(if $(RUN),,$(error give RUN=<run or cv folder>, for example RUN=runs/cv-cnn-20261125-120000))
	$(KIP) refit --competition $(COMPETITION) --run '$(RUN)'

blend: $(INSTALLED) ## RUNS="a b ...": greedy ensemble weights chosen on out-of-fold predictions -> runs/blend-<time>/ + submission
	$(if $(RUNS),,$(error give RUNS="runA runB ..." (runs, CV or blend folders)))
	$(KIP) blend --competition $(COMPETITION) --runs $(RUNS)

tune: $(DATA_READY) ## Optuna search, resumable (TRIALS=, MINUTES= with the final check, FIDELITY=, CHECK=, WORKERS=, SCHEDULER=, STORAGE=, SPACE=)
	$(KIP) tune $(TRAIN_ARGS) --trials $(or $(TRIALS),$(if $(MINUTES),0,10)) $(if $(MINUTES),--minutes $(MINUTES)) $(if $(STORAGE),--storage '$(STORAGE)') \
		$(CLUSTER_ARGS) --pruner $(PRUNER) $(if $(STUDY),--study '$(STUDY)') $(foreach s,$(SPACE),--space '$(s)') \
		$(if $(FIDELITY),--fidelity '$(FIDELITY)') $(if $(CHECK),--check '$(CHECK)')

tune-report: $(INSTALLED) ## the study's fidelity, final check, parameter importances, top trials and plots -> reports/<slug>/tune-*
	$(KIP) tune-report --competition $(COMPETITION) --arch $(ARCH) $(if $(STORAGE),--storage '$(STORAGE)') $(if $(STUDY),--study '$(STUDY)')

bench-tune: $(INSTALLED) ## trials/hour and best score with and without pruning on a GIC-sized subset (MINUTES= per mode)
	$(BIN)/python -m tuning.bench_tune $(if $(MINUTES),--minutes $(MINUTES))

# KIP_HOME=/work/exp make bench-tune-transfer COMPETITION=gic-dev: about MINUTES (62 minutes: the check's runs are the
# final ones; 2 x the final budget more with CHECK="budget=0.5");
# reduced: MINUTES=20 FINAL_MINUTES=6 (HOLDOUT=0.15 sets a private share of train aside instead of a labelled test)
bench-tune-transfer: $(DATA_READY) ## make tune MINUTES=60 on train, then tuned vs default make train (FINAL_MINUTES=), scored on a private hold-out (HOLDOUT=)
	$(BIN)/python -m tuning.bench_transfer --competition $(COMPETITION) --arch $(ARCH) --minutes $(or $(MINUTES),60) \
		$(if $(FINAL_MINUTES),--final-minutes $(FINAL_MINUTES)) $(if $(HOLDOUT),--holdout $(HOLDOUT)) \
		$(if $(FIDELITY),--fidelity '$(FIDELITY)') $(if $(CHECK),--check '$(CHECK)') $(if $(TRIALS),--trials $(TRIALS)) \
		--pruner $(PRUNER) $(foreach s,$(SET),--set $(s)) $(foreach s,$(SPACE),--space '$(s)')

bench-recipe: $(DATA_READY) ## does a recipe change pay? default vs VARIANTS='a=1;b=2 c=3' at MINUTES=, SEEDS=, scored on a private hold-out (HOLDOUT=)
	$(BIN)/python -m pipelines.bench_recipe --competition $(COMPETITION) --arch $(ARCH) $(if $(MINUTES),--minutes $(MINUTES)) \
		$(if $(SEEDS),--seeds $(SEEDS)) $(if $(HOLDOUT),--holdout $(HOLDOUT)) $(foreach s,$(SET),--set $(s)) \
		$(foreach v,$(subst ;, ,$(subst $(space),~,$(VARIANTS))),--variant '$(subst ~, ,$(v))')

bench-tta: $(INSTALLED) ## which TTA views pay: finished RUNS="a b" scored on their private hold-out, nothing trained
	$(if $(RUNS),,$(error give RUNS="runA runB ..." (finished runs of a competition with test labels, e.g. bench-recipe's)))
	$(BIN)/python -m pipelines.bench_tta $(RUNS)

# KIP_HOME=/work/exp make bench-fidelity COMPETITION=gic-dev: about RECIPES x (final budget + the fidelities' budgets)
bench-fidelity: $(DATA_READY) ## which trial fidelity ranks recipes like the final run (RECIPES=8, FIDELITIES='a;b', FINAL_MINUTES=)
	$(BIN)/python -m tuning.bench_fidelity --competition $(COMPETITION) --arch $(ARCH) --settings $(or $(RECIPES),8) \
		$(if $(FINAL_MINUTES),--set minutes=$(FINAL_MINUTES)) $(foreach f,$(subst ;, ,$(subst $(space),~,$(FIDELITIES))),--fidelity '$(subst ~, ,$(f))') \
		$(foreach s,$(SET),--set $(s)) $(foreach s,$(SPACE),--space '$(s)')

$(LATEST_SUB): $(LATEST_RUN)
	$(KIP) predict $(PREDICT_ARGS)

# RUNS= names the runs: nothing is trained first
predict: $(if $(RUNS),$(INSTALLED),$(LATEST_RUN)) ## test probabilities (.npz with ids) + submission with the newest run (RUNS="a b", TTA=none|flip|shift|flip+shift); IMAGE=x.png: top 5
	$(KIP) predict $(PREDICT_ARGS)

# FILE= uploads that file; RUNS="a b" predicts with those runs first; otherwise the newest submission (made if missing).
submit: $(if $(or $(FILE),$(RUNS)),$(INSTALLED),$(LATEST_SUB)) ## check, then upload the newest submission (or FILE=, RUNS=, MESSAGE=) and list recent scores
	$(if $(RUNS),$(if $(FILE),$(error give FILE= or RUNS=, not both)))
	$(if $(RUNS),$(KIP) predict --competition $(COMPETITION) --runs $(RUNS) $(if $(SUBMISSION_HEADER),--submission-header '$(SUBMISSION_HEADER)'))
	$(KIP) submit --competition $(COMPETITION) $(if $(FILE),--file '$(FILE)') $(if $(MESSAGE),--message '$(MESSAGE)')

check-submission: $(INSTALLED) ## refuse a submission CSV (FILE=, default the newest) with a wrong header, ids or labels
	$(KIP) check-submission --competition $(COMPETITION) $(if $(FILE),--file '$(FILE)')

submissions: $(INSTALLED) ## list local submission files with their validation scores, newest first
	$(KIP) submissions

bench-scale: $(INSTALLED) ## folds/hour of a 4-fold CV on 1 and 2 local Dask workers of 1 thread and 1 of 2; N machines projected (EPOCHS=, BENCH_SCALE_ARGS=)
	$(BIN)/python -m pipelines.bench_scale $(if $(EPOCHS),--epochs $(EPOCHS)) $(BENCH_SCALE_ARGS)

bench: bench-load bench-train bench-tune bench-scale ## every benchmark: loading, training throughput, tuning with and without pruning, scaling

BENCH_ARCHS ?= cnn resnet10
# a reduced bench-scale, to try it: BENCH_SCALE_ARGS="--generated --classes 10 --per-class 20 --test 50 --size 32"
BENCH_SCALE_ARGS ?=

bench-train: $(INSTALLED) ## training images/s: plain Keras fp32 vs ours vs PyTorch bf16 channels-last (BENCH_ARCHS=)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q -e '.[bench]' \
		|| echo "bench-train: PyTorch could not be installed; its column is left out"
	$(BIN)/python -m pipelines.bench_train --arch $(BENCH_ARCHS) $(if $(filter-out digits-demo,$(COMPETITION)),--competition $(COMPETITION))

lint: $(INSTALLED) ## ruff: style, imports and likely bugs, as configured in pyproject.toml
	$(BIN)/ruff check .

format: $(INSTALLED) ## ruff: fix what it can (imports, modern syntax) in place
	$(BIN)/ruff check --fix .

test: $(INSTALLED) ## run the whole test suite on TEST_WORKERS=3 processes (creates .venv if missing)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-fast: $(INSTALLED) ## the test suite without the slow end-to-end runs
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not slow" $(PYTEST_ARGS)

clean-tuning: ## remove the tuning studies and the tuned parameters they recommend (tuning/*.db, *.journal, best-*.json)
	rm -f tuning/*.db tuning/*.db-wal tuning/*.db-shm tuning/*.journal tuning/best-*.json

clean: ## remove generated data, runs, reports and submissions (keeps .venv, tuning studies and tuned parameters)
	rm -rf data runs reports submissions/*.csv submissions/*.json submissions/*.txt submissions/*.npz
