# Two commands matter: `make demo` (the main job) and `make test` (the whole suite).
# Both create the virtual environment themselves on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# The browser the page's tests drive: Debian's package (nothing is downloaded from a browser CDN).
CHROMIUM := /usr/bin/chromium
STAMP := $(VENV)/.installed
# axe-core, the accessibility checker the page's tests inject: from the npm registry, pinned.
AXE_VERSION := 4.14.1
AXE := tests/.axe/axe-core-$(AXE_VERSION)/axe.min.js

.PHONY: demo test test-fast up down logs bench chaos lint clean screenshot

$(STAMP): pyproject.toml requirements-dev.txt requirements-reference.txt rest/requirements.txt worker/requirements.txt \
		client/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# The CPU build of torch first, so that demucs does not pull a CUDA build.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-reference.txt
	# The project itself, editable: `micro-demucs` and the services' commands on the venv's PATH.
	$(PY) -m pip install --quiet -e .
	touch $(STAMP)

demo: $(STAMP)  ## separate data/song.mp3 through the whole local stack
	$(PY) -m scripts.local.demo

$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'

$(AXE):
	mkdir -p $(dir $(AXE))
	cd $(dir $(AXE)) && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null && \
		tar -xzf axe-core-$(AXE_VERSION).tgz --strip-components=1 package/axe.min.js && \
		rm axe-core-$(AXE_VERSION).tgz

test: lint $(CHROMIUM) $(AXE)  ## lint, then the whole test suite against real Redis and S3 servers
	$(PY) -m pytest

# No server, no process started: the pure tests (pyproject.toml's markers), in about a minute.
test-fast: lint  ## lint, then the tests that need neither the servers nor whole processes
	$(PY) -m pytest -q -m "not servers and not slow"

up: $(STAMP)  ## start the local stack in the background (REST_PORT, WORKERS, RENDERERS, DEMUCS_MODEL)
	$(PY) -m scripts.local.stack up

down:  ## stop exactly what `make up` started
	$(PY) -m scripts.local.stack down

logs: $(STAMP)  ## print the log lines both services push to Redis
	set -a; . .run/stack.env; $(PY) -m logs

bench: $(STAMP)  ## stock Demucs and audio-separator's RoFormer against this service, side by side; memory by song length
	$(PY) -m scripts.bench.bench
	$(PY) -m scripts.bench.bench_roformer speed
	$(PY) -m scripts.bench.bench_memory --seconds 60 600
	$(PY) -m scripts.bench.bench_stack_memory

chaos: $(STAMP)  ## 50 songs, 3 workers and 2 render workers, one killed every few seconds
	$(PY) -m scripts.chaos.chaos

screenshot: $(STAMP) $(CHROMIUM) $(AXE)  ## docs/page.png: the page with a finished song, from its test
	UPDATE_SCREENSHOT=1 $(PY) -m pytest -q tests/test_page.py -k uploaded

lint: $(STAMP)  ## ruff, and mypy over the code that ships (its settings in pyproject.toml)
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf .run output bench-results
