# qnb workbook. The two commands a newcomer needs: `make run` and `make test`.
# Every target sets up the environment first (.venv from requirements.lock), quietly when present.
# Portable to macOS: GNU make 3.81 (no .SHELLFLAGS, no target-specific exports) and /bin/bash 3.2;
# a recipe line that pipes starts with $(STRICT) so that a failing command fails the line.

SHELL      := /bin/bash
STRICT     := set -eo pipefail;
PYTHON     ?= $(shell command -v python3.11 || command -v python3 || echo python3.11)
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
export PIP_DISABLE_PIP_VERSION_CHECK := 1
# JupyterLab defaults for this environment: never fetch news nor ask about it, never check for
# updates (the supported way: a settings override in the environment's app settings folder).
LAB_OVERRIDES := $(VENV)/share/jupyter/lab/settings/overrides.d/qnb.json
LAB_DEFAULTS  := {"@jupyterlab/apputils-extension:notification": \
                  {"fetchNews": "false", "checkForUpdates": false}}
# nbgrader's lab and server extensions: the formgrader works on the course of `make assignments`
# (build/course), and finding that config keeps `make lab` free of "No nbgrader_config.py" warnings.
NBGRADER_DEFAULTS := $(VENV)/etc/jupyter/nbgrader_config.py
# The Python the lock is made for: 3.11, any patch release (Debian 12 has 3.11.2).
PYTHON_OK  := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] < (3, 12))
CHECK_PYTHON := "$(PYTHON)" -c '$(PYTHON_OK)' 2>/dev/null || { \
    v=$$("$(PYTHON)" -V 2>&1) || v="not a runnable Python"; \
    echo "qnb needs Python 3.11 (3.11.0 or a later 3.11.x), but PYTHON=$(PYTHON) is $$v." \
    "Install Python 3.11, then: make PYTHON=/path/to/python3.11 setup" >&2; exit 1; }
# make lock: the new pins (pip freeze) with the markers of requirements.lock, plus the lock's
# marked pins that this machine does not install; "key<TAB>line", sorted by canonical name.
LOCK_MERGE := function key(s) { s = tolower(s); gsub(/[-_.]+/, "-", s); return s } \
    FNR == NR { if (/^[A-Za-z0-9].*;/) { split($$0, p, "=="); k = key(p[1]); kept[k] = $$0; \
                mark[k] = substr($$0, index($$0, ";")) }; next } \
    { split($$0, p, "=="); k = key(p[1]); line = $$0; if (k in mark) line = $$0 " " mark[k]; \
      delete kept[k]; print k "\t" line } \
    END { for (k in kept) print k "\t" kept[k] }

.PHONY: setup run models test lint unit nbval papermill smoke notebooks assignments lab lock clean

setup: $(READY) $(LAB_OVERRIDES) $(NBGRADER_DEFAULTS)

$(READY): requirements.lock pyproject.toml
	@test -x $(BIN)/python || { $(CHECK_PYTHON) && echo "Creating $(VENV) with $(PYTHON)" \
	    && "$(PYTHON)" -m venv $(VENV); }
	@echo "Installing pinned packages into $(VENV) (a few minutes the first time)"
	@$(STRICT) $(BIN)/pip install -q -r requirements.lock 2>&1 | { grep -v "$(PIP_NOISE)" || true; }
	@$(STRICT) $(BIN)/pip install -q --no-deps --no-build-isolation -e . 2>&1 \
	    | { grep -v "$(PIP_NOISE)" || true; }
	@touch $@

$(LAB_OVERRIDES): Makefile
	@mkdir -p $(@D)
	@echo '$(LAB_DEFAULTS)' > $@

$(NBGRADER_DEFAULTS): Makefile
	@mkdir -p $(@D)
	@printf '%s\n' '# Written by make (qnb): the course that `make assignments` builds.' \
	    'c = get_config()  # noqa: F821' 'c.CourseDirectory.root = "$(abspath build/course)"' > $@

## run: execute every notebook with papermill into $(RUN): results.csv and report.html
run: $(READY)
	$(BIN)/python -m qnb run --out $(RUN) $(NOTEBOOKS)

## models: retrain the shipped weights in data/weights (one model per core at a time; about
##         30 minutes on 2 cores): the notebooks load those files, nothing trains on a fresh clone
models: $(READY)
	$(BIN)/python -m qnb models

## sweep: one notebook over a grid, e.g. make sweep NB=notebooks/01_affine_quantization.ipynb
##        SWEEP="-p bits=2,4,8 --jobs 2" (results in runs/sweep-<notebook>)
.PHONY: sweep
sweep: $(READY)
	@test -n "$(NB)" || { echo 'usage: make sweep NB=notebooks/NN_x.ipynb SWEEP="-p NAME=V1,V2"'; exit 2; }
	$(BIN)/python -m qnb sweep $(NB) $(SWEEP) --out runs/sweep-$(basename $(notdir $(NB)))

## test: lint, unit tests (fast and slow, one worker per core), every notebook under nbval,
## notebook runs with other parameters, the JupyterLab smoke tests
test: lint units nbval papermill smoke

lint: $(READY)
	$(BIN)/ruff check qnb tests data notebooks

## unit: the unit tests not marked slow; slow: the rest (training, torch.compile, the lock
## resolved for every platform against the registry)
unit: $(READY)
	$(PYTEST) -m "not slow" tests/unit

.PHONY: slow units
slow: $(READY)
	$(PYTEST) -m slow tests/unit
## units: both tiers at once, one pytest-xdist worker per core (what make test runs)
units: $(READY)
	$(PYTEST) -n auto tests/unit

nbval: $(READY)
	$(PYTEST) --nbval-lax --nbval-current-env --nbval-cell-timeout=900 \
	    --nbval-sanitize-with tests/nbval_sanitize.cfg notebooks

## papermill: notebooks run with non-default parameters (records checked) and with every cell twice
# papermill runs one notebook per core at a time, each kernel on one thread (OMP_NUM_THREADS=1:
# no oversubscribed cores); timing claims are asserted only for a notebook that ran alone.
papermill: $(READY)
	OMP_NUM_THREADS=1 $(PYTEST) -n auto tests/notebooks

## smoke: JupyterLab end to end: REST API and kernel, then a headless-Chromium "run all"
smoke: $(READY) $(LAB_OVERRIDES) $(NBGRADER_DEFAULTS)
	$(PYTEST) tests/smoke

## notebooks: re-execute the committed notebooks in place (default parameters) and clean them
notebooks: $(READY)
	$(BIN)/python -m qnb refresh $(NOTEBOOKS)

## assignments: the notebooks as an nbgrader course in build/course: source/ (with solutions) and
## release/ (the students' versions, made by nbgrader's generate_assignment)
assignments: $(READY)
	$(BIN)/python -m qnb assignments build --out build/course

## lab: open JupyterLab on the notebooks, with this environment as the kernel
# (--allow-root only when run as root, e.g. in a container; no news or update checks: offline)
lab: $(READY) $(LAB_OVERRIDES) $(NBGRADER_DEFAULTS)
	QNB_PROGRESS=auto $(BIN)/jupyter lab --notebook-dir=notebooks --LabApp.news_url=None \
	    --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	    $(if $(filter 0,$(shell id -u)),--allow-root)

## lock: regenerate the exact pins from the current environment (run it on Linux x86-64). The
## environment markers of the current lock are kept, and so are the pins of packages that only
## other platforms install; environment.yml gets the same lines. Then check the platforms:
## .venv/bin/python -m pytest tests/unit/test_lock_platforms.py
lock: $(READY)
	@$(STRICT) $(BIN)/pip freeze --all --exclude pip --exclude-editable 2>/dev/null \
	    | awk '$(LOCK_MERGE)' requirements.lock - | LC_ALL=C sort | cut -f 2- > requirements.lock.new
	@{ grep '^#' requirements.lock; cat requirements.lock.new; } > requirements.lock.tmp
	@{ sed '/^  - pip:$$/q' environment.yml; sed 's/^/      - /' requirements.lock.new; } \
	    > environment.yml.new
	@mv requirements.lock.tmp requirements.lock && mv environment.yml.new environment.yml
	@rm -f requirements.lock.new

clean:
	rm -rf runs build .cache .pytest_cache .ruff_cache
