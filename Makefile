# qnb workbook. The two commands a newcomer needs: `make run` and `make test`; `make help` lists
# every target, from the `## target: what it does` lines (continued by `##` lines) above each.
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
# OFFLINE=1: leave out the tests that reach the package registry (marker `network`)
OFFLINE_MARKS = $(if $(OFFLINE),-m "not network")
NBVAL      := $(PYTEST) --nbval-lax --nbval-current-env --nbval-cell-timeout=1800 \
              --nbval-sanitize-with tests/nbval_sanitize.cfg
# The notebooks that measure speed (qnb.notebook.times_things); read when a recipe needs them,
# after the environment exists
TIMING_NOTEBOOKS = $(shell $(BIN)/python -c 'import sys; from qnb.notebook import times_things; \
    print(*[n for n in sys.argv[1:] if times_things(n)])' $(NOTEBOOKS))

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
# The lookup of the browser test (tests/smoke/test_browser.py: a `chromium` on PATH).
NO_CHROMIUM := Nothing ran: the browser test (test-browser, part of make test) needs Chromium,\
    and there is no \`chromium\` on PATH.

.PHONY: run test lab setup models sweep assignments help \
        test-lint test-units test-fast test-slow test-notebooks test-parameters test-browser \
        notebooks lock clean check-chromium
# One target at a time, even under `make -j`: the test tiers spread over the cores themselves
# (pytest-xdist), and `make test` looks for Chromium before anything else runs.
.NOTPARALLEL:
.DEFAULT_GOAL := setup

## run: execute every notebook with papermill into runs/latest (RUN=DIR for another
##      folder): results.csv and report.html
run: $(READY)
	$(BIN)/python -m qnb run --out $(RUN) $(NOTEBOOKS)

## test: the test tiers in this order: test-lint, test-units, test-notebooks,
##       test-parameters, test-browser; without Chromium it stops before running any;
##       OFFLINE=1 leaves out the tests that reach the package registry
test: check-chromium test-lint test-units test-notebooks test-parameters test-browser

## lab: open JupyterLab on the notebooks, with this environment as the kernel
# (--allow-root only when run as root, e.g. in a container; no news or update checks: offline)
lab: $(READY) $(LAB_OVERRIDES) $(NBGRADER_DEFAULTS)
	QNB_PROGRESS=auto $(BIN)/jupyter lab --notebook-dir=notebooks --LabApp.news_url=None \
	    --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate \
	    $(if $(filter 0,$(shell id -u)),--allow-root)

## setup: only the environment: .venv from requirements.lock (every other target
##        does this first)
setup: $(READY) $(LAB_OVERRIDES) $(NBGRADER_DEFAULTS)

$(READY): requirements.lock pyproject.toml
	@test -x $(BIN)/python || { $(CHECK_PYTHON) && echo "Creating $(VENV) with $(PYTHON)" \
	    && "$(PYTHON)" -m venv $(VENV); }
	@echo "Installing pinned packages into $(VENV) (a few minutes the first time)"
	@$(BIN)/pip install -q -r requirements.lock
	@$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	@touch $@

$(LAB_OVERRIDES): Makefile
	@mkdir -p $(@D)
	@echo '$(LAB_DEFAULTS)' > $@

$(NBGRADER_DEFAULTS): Makefile
	@mkdir -p $(@D)
	@printf '%s\n' '# Written by make (qnb): the course that `make assignments` builds.' \
	    'c = get_config()  # noqa: F821' 'c.CourseDirectory.root = "$(abspath build/course)"' > $@

## models: retrain the shipped weights in data/weights (one model per core at a time;
##         about 30 minutes on 2 cores): the notebooks load those files, nothing trains
##         on a fresh clone
models: $(READY)
	$(BIN)/python -m qnb models

## sweep: one notebook over a grid (results in runs/sweep-<notebook>), for example
##        make sweep NB=notebooks/01_affine_quantization.ipynb SWEEP="-p compare_bits=4,8"
sweep: $(READY)
	@test -n "$(NB)" || { echo 'usage: make sweep NB=notebooks/NN_x.ipynb SWEEP="-p NAME=V1,V2"'; exit 2; }
	$(BIN)/python -m qnb sweep $(NB) $(SWEEP) --out runs/sweep-$(basename $(notdir $(NB)))

## assignments: the notebooks as an nbgrader course in build/course: source/ (with
##              solutions) and release/ (the students' versions, made by nbgrader's
##              generate_assignment)
assignments: $(READY)
	$(BIN)/python -m qnb assignments build --out build/course

## test-lint: ruff over qnb, tools, tests, data and notebooks
test-lint: $(READY)
	$(BIN)/ruff check qnb tools tests data notebooks

## test-units: all unit tests (test-fast and test-slow at once), one pytest-xdist
##             worker per core
test-units: $(READY)
	$(PYTEST) -n auto --durations=15 $(OFFLINE_MARKS) tests/unit
	@$(if $(OFFLINE),$(STRICT) n=$$($(PYTEST) --collect-only -q -m network tests/unit | grep -c ::); \
	    echo "OFFLINE=1: left out $$n tests that reach the package registry (marker network)")

## test-fast: the unit tests not marked slow
test-fast: $(READY)
	$(PYTEST) -m "not slow$(if $(OFFLINE), and not network)" tests/unit

## test-slow: the unit tests marked slow (training, torch.compile, the lock resolved
##            for every platform against the package registry)
test-slow: $(READY)
	$(PYTEST) -m "slow$(if $(OFFLINE), and not network)" tests/unit

## test-notebooks: every notebook under nbval, top to bottom: no cell may fail, and cells
##                 tagged nbval-check-output must reproduce their committed output
# The notebooks that time nothing run one per core (each kernel on one thread, every cell of a
# notebook in one worker: --dist loadscope), then the ones that time things (qnb.bench) alone.
test-notebooks: $(READY)
	OMP_NUM_THREADS=1 $(NBVAL) -n auto --dist loadscope $(filter-out $(TIMING_NOTEBOOKS),$(NOTEBOOKS))
	$(NBVAL) $(TIMING_NOTEBOOKS)

## test-parameters: papermill runs with non-default parameters (records checked) and
##                  with every cell run twice
# One notebook per core at a time, each kernel on one thread (OMP_NUM_THREADS=1: no
# oversubscribed cores); timing claims are asserted only for a notebook that ran alone.
test-parameters: $(READY)
	OMP_NUM_THREADS=1 $(PYTEST) -n auto --durations=15 tests/notebooks

## test-browser: JupyterLab end to end: REST API and kernel, then a headless-Chromium
##               "run all"
test-browser: check-chromium $(READY) $(LAB_OVERRIDES) $(NBGRADER_DEFAULTS)
	$(PYTEST) tests/smoke

check-chromium:
	@command -v chromium >/dev/null || { echo "$(NO_CHROMIUM)"; \
	    echo "  Debian: apt-get install chromium (as root; .ci/run does this)"; \
	    echo "  Or every test but the browser test:"; \
	    echo "    make test-lint test-units test-notebooks test-parameters"; exit 1; } >&2

## notebooks: re-execute the committed notebooks in place (default parameters) and
##            clean them
notebooks: $(READY)
	$(BIN)/python -m qnb refresh $(NOTEBOOKS)

## lock: regenerate the exact pins from the current environment (run it on Linux
##       x86-64) with tools/lock.py: the current lock's environment markers are kept, and
##       so are the pins of packages only other platforms install; environment.yml gets
##       the same lines. Then check every platform:
##       .venv/bin/python -m pytest tests/unit/test_lock_platforms.py
lock: $(READY)
	@$(STRICT) $(BIN)/pip freeze --all --exclude pip --exclude-editable 2>/dev/null \
	    | $(BIN)/python tools/lock.py requirements.lock environment.yml

## clean: remove runs, built courses and caches (not .venv)
clean:
	rm -rf runs build .cache .pytest_cache .ruff_cache

## help: this list
help:
	@echo "make TARGET: the first target you run sets up .venv (a few minutes)."
	@awk '/^## [a-z-]+:/ { name = $$2; sub(/:$$/, "", name); sub(/^## [a-z-]+: */, ""); \
	        printf "  %-16s %s\n", name, $$0; next } \
	    /^##/ { sub(/^## */, ""); printf "  %-16s %s\n", "", $$0 }' $(firstword $(MAKEFILE_LIST))
