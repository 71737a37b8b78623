# Two commands do everything: `make run` and `make test`.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
REQ_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
RUNTIME := $(PY) -m kimberly.runtime exec --

.PHONY: run test install browser promtool lint services-up services-down bench-memory clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Re-installs only when requirements.txt changes.
$(STAMP): requirements.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements.txt
	rm -f $(VENV)/.installed-* && touch $(STAMP)

# The coder agent's sandbox (agents/sandbox/) needs bubblewrap and a Python under
# /usr; installed here when missing (as root; otherwise say what is missing).
install: $(STAMP)
	@command -v bwrap >/dev/null && { [ -x /usr/bin/python3 ] || [ -x /usr/local/bin/python3 ]; } \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq bubblewrap python3; } \
	  || { echo "make: the coder's sandbox needs: apt-get install bubblewrap python3" >&2; exit 1; }

# The web UI's browser tests (web/tests) drive Debian's chromium, headless;
# installed here when missing (as root; otherwise say what is missing).
browser:
	@command -v chromium >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq chromium; } \
	  || { echo "make: the browser tests need: apt-get install chromium" >&2; exit 1; }

# The alert rules (deploy/prometheus/) are checked and unit-tested with promtool,
# from Debian's prometheus package; installed here when missing (as root;
# otherwise say what is missing).
promtool:
	@command -v promtool >/dev/null \
	  || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } \
	  || { echo "make: the alert rule tests need: apt-get install prometheus (promtool)" >&2; exit 1; }

run: install
	$(RUNTIME) ./scripts/serve.sh

test: install browser promtool
	$(RUNTIME) ./scripts/test.sh

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

services-up: install
	$(PY) -m kimberly.runtime up

services-down: install
	$(PY) -m kimberly.runtime down

clean: services-down
	rm -rf var
