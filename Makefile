# The two commands of the quick start are `make run` and `make test`; both set up what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
# Three workers on two cores: most tests wait on a subprocess or a socket part of the time.
PYTEST_ARGS ?= -n 3 --dist worksteal

.PHONY: run test lint format docs bench clean test-deps vendor-uplot

# pip's output goes to a log that is shown only when the install fails.
PIP_INSTALL = $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
QUIET = > $(VENV)/pip.log 2>&1 || { cat $(VENV)/pip.log; exit 1; }

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The install compiles the detectors' per-sample modules in place (setup.py, mypyc; pure Python
# where no C compiler is at hand): an edit to one of them reinstalls, so nothing runs a stale
# compiled copy.
DETECT_SOURCES := $(wildcard infrawatch/detect/*.py)

$(STAMP): pyproject.toml constraints.txt setup.py $(DETECT_SOURCES) | $(BIN)/python
	@echo "installing infrawatch into $(VENV) (compiling the detectors takes about a minute)"
	@$(PIP_INSTALL) -e . $(QUIET)
	@touch $@

$(DEV_STAMP): pyproject.toml constraints.txt setup.py $(DETECT_SOURCES) | $(BIN)/python
	@echo "installing infrawatch and its dev dependencies into $(VENV) (compiling the detectors: ~1 min)"
	@$(PIP_INSTALL) -e '.[dev]' $(QUIET)
	@touch $@ $(STAMP)

run: $(STAMP)
	$(BIN)/python -m infrawatch run

# Debian's promtool, prometheus and alertmanager are the real peers the tests talk to.
test-deps:
	@scripts/install-test-deps.sh

# mypy checks the package (strict) and tests/, bench/, scripts/; pytest ends with a coverage
# report of the package (in-process code only: see [tool.coverage.run] in pyproject.toml).
test: $(DEV_STAMP) test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest --cov --cov-report=term:skip-covered $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The settings table in docs/configuration.md is generated; a test fails when it is stale.
docs: $(DEV_STAMP)
	$(BIN)/python scripts/config_reference.py

# Glances is only a point of comparison, so it lives in its own venv.
.venv-glances/bin/glances:
	$(PYTHON) -m venv .venv-glances
	@.venv-glances/bin/python -m pip install --disable-pip-version-check -q glances > /dev/null

bench: $(DEV_STAMP) test-deps .venv-glances/bin/glances
	$(BIN)/python bench/overhead.py --glances .venv-glances/bin/glances

# uPlot is vendored into the package (the page has no build step and no CDN). This refreshes it
# from the npm registry: `make vendor-uplot UPLOT_VERSION=1.6.33` (default: the vendored version);
# scripts/vendor_uplot.py checks the pinned version and digest and applies the lazy-Intl patch.
UPLOT_DIR := infrawatch/web/static/vendor
UPLOT_VERSION ?= $(shell cat $(UPLOT_DIR)/VERSION)
vendor-uplot:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && npm pack --silent "uplot@$(UPLOT_VERSION)" > /dev/null && tar -xzf uplot-*.tgz) && \
	$(PYTHON) scripts/vendor_uplot.py "$$tmp/package/dist/uPlot.esm.js" --version \
		"$$(node -p 'require(process.argv[1]).version' "$$tmp/package/package.json")" && \
	cp "$$tmp/package/dist/uPlot.min.css" "$$tmp/package/LICENSE" $(UPLOT_DIR)/

clean:
	rm -rf $(VENV) .venv-glances build *.egg-info .pytest_cache .mypy_cache .ruff_cache .coverage
	rm -f *__mypyc.*.so infrawatch/detect/*.so
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
