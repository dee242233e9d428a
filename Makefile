# Everything a fresh machine needs: `make test` and `make demo` set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export TEST_REGISTRY

.PHONY: test style lint demo bench venv registry-deps system-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

APT_INSTALL = apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

# Debian's registry (CNCF distribution 2.8): all the demo needs.
registry-deps:
	@test -x /usr/bin/docker-registry || { echo "installing docker-registry"; $(APT_INSTALL) docker-registry >/dev/null; }

# The tests also compare against skopeo and wrk, and drive Chromium; without Chromium the browser
# tests skip with a message.
system-deps: registry-deps
	@missing=""; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; $(APT_INSTALL) $$missing >/dev/null; fi
	@test -x /usr/bin/chromium || { echo "installing chromium"; $(APT_INSTALL) chromium chromium-driver >/dev/null; } \
		|| echo "chromium could not be installed: the browser tests will be skipped"

LINT_PATHS := regframe tests benchmarks

# Style and formatting.
style: venv
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# Style and types: `make test` runs these first, so CI fails on them.
lint: style
	$(VENV)/bin/mypy regframe

test: lint system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: venv registry-deps
	$(PY) -m regframe.demo --out audit-report

bench: venv system-deps
	$(PY) benchmarks/inventory.py
	$(PY) benchmarks/analysis.py
	$(PY) benchmarks/scale.py
	$(PY) benchmarks/adaptive.py

clean:
	rm -rf $(VENV) audit-report .pytest_cache
