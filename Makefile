# qnb workbook. The two commands a newcomer needs: `make run` and `make test`.
# Every target sets up the environment first (.venv from requirements.lock), quietly when present.

SHELL      := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON     ?= $(shell command -v python3.11 || command -v python3)
VENV       := .venv
BIN        := $(VENV)/bin
READY      := $(VENV)/.ready
RUN        ?= runs/latest
NOTEBOOKS  := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
PYTEST     := $(BIN)/python -m pytest
# pip's complaints about this machine's local index folders, not about us
PIP_NOISE  := is ignored: it is neither a file nor a directory

# The kernel is the `python3` kernel of this environment, never one from elsewhere on the machine.
export JUPYTER_PATH := $(abspath $(VENV))/share/jupyter
# Progress bars (qnb.progress): a few plain-text lines in batch runs, live widget bars in the lab.
export QNB_PROGRESS := text
lab: export QNB_PROGRESS := auto
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup run test lint unit nbval papermill smoke notebooks assignments lab lock clean

setup: $(READY)

$(READY): requirements.lock pyproject.toml
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "Installing pinned packages into $(VENV) (about a minute the first time)"
	@$(BIN)/pip install -q -r requirements.lock 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e . 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@touch $@

## run: execute every notebook with papermill into $(RUN): results.csv and report.html
run: $(READY)
	$(BIN)/python -m qnb run --out $(RUN) $(NOTEBOOKS)

## sweep: one notebook over a grid, e.g. make sweep NB=notebooks/01_affine_quantization.ipynb
##        SWEEP="-p bits=2,4,8 --jobs 2" (results in runs/sweep-<notebook>)
.PHONY: sweep
sweep: $(READY)
	@test -n "$(NB)" || { echo 'usage: make sweep NB=notebooks/NN_x.ipynb SWEEP="-p NAME=V1,V2"'; exit 2; }
	$(BIN)/python -m qnb sweep $(NB) $(SWEEP) --out runs/sweep-$(basename $(notdir $(NB)))

## test: lint, unit tests, every notebook under nbval, notebook runs with other parameters
test: lint unit nbval papermill smoke

lint: $(READY)
	$(BIN)/ruff check qnb tests data notebooks

unit: $(READY)
	$(PYTEST) tests/unit

nbval: $(READY)
	$(PYTEST) --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

## papermill: notebooks run with non-default parameters (records checked) and with every cell twice
papermill: $(READY)
	$(PYTEST) tests/notebooks

## smoke: JupyterLab end to end: REST API and kernel, then a headless-Chromium "run all"
smoke: $(READY)
	$(PYTEST) tests/smoke

## notebooks: re-execute the committed notebooks in place (default parameters) and clean them
notebooks: $(READY)
	$(BIN)/python -m qnb refresh $(NOTEBOOKS)

## assignments: student and instructor versions of the notebooks in build/assignments
assignments: $(READY)
	$(BIN)/python -m qnb assignments build --out build/assignments

## lab: open JupyterLab on the notebooks, with this environment as the kernel
# (--allow-root only when run as root, e.g. in a container; no news or update checks: offline)
lab: $(READY)
	$(BIN)/jupyter lab --notebook-dir=notebooks --LabApp.news_url=None \
	    --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	    $(if $(filter 0,$(shell id -u)),--allow-root)

## lock: regenerate the exact pins from the current environment
lock: $(READY)
	@{ head -n 2 requirements.lock; $(BIN)/pip freeze --exclude-editable; } > requirements.lock.new
	@mv requirements.lock.new requirements.lock

clean:
	rm -rf runs build .cache .pytest_cache .ruff_cache
