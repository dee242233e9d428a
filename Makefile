# Everything a fresh machine needs: `make test` and `make demo` set themselves up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export TEST_REGISTRY

.PHONY: test demo bench venv system-deps clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench]'
	touch $@

# Debian's registry (CNCF distribution 2.8), the peers the tests compare against, and a browser.
system-deps:
	@missing=""; \
	test -x /usr/bin/docker-registry || missing="$$missing docker-registry"; \
	command -v skopeo >/dev/null || missing="$$missing skopeo"; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	test -x /usr/bin/chromium || missing="$$missing chromium chromium-driver"; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

test: venv system-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

demo: venv system-deps
	$(PY) -m regframe.demo --out audit-report

bench: venv system-deps
	$(PY) benchmarks/inventory.py
	$(PY) benchmarks/analysis.py
	$(PY) benchmarks/scale.py

clean:
	rm -rf $(VENV) audit-report .pytest_cache
