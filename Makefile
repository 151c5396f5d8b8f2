# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Twice quiet: pip's warnings (about the machine's own index settings, say) are nothing a
# user of this project acts on; its errors still show.
PIP_INSTALL := $(BIN)/pip install --quiet --quiet --disable-pip-version-check

.PHONY: serve test bench clean

$(BIN)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	  echo "make: mcp-trio needs Python 3.11 or newer, and '$(PYTHON)' is not: pass PYTHON=python3.12 (or another)" >&2; exit 2; }
	@echo "Installing mcp-trio and its test tools into $(VENV) (once)"
	@$(PYTHON) -m venv $(VENV)
	@$(PIP_INSTALL) -e '.[test]'
	@touch $@

serve: $(BIN)/.installed
	@$(BIN)/mcp-trio serve --transport http $(ARGS)

# tests/prerequisites.py says first, in one line each, what the suite needs and is missing.
test: $(BIN)/.installed
	@$(BIN)/python tests/prerequisites.py
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The standard comparison (README.md, "Performance", says what it runs and how long it takes):
# writes bench/results/<date>-<host>.json and .md. The peer servers are installed into
# bench/.venv by the script itself, never into .venv.
bench: $(BIN)/.installed
	$(BIN)/python bench/run_standard.py $(ARGS)

clean:
	rm -rf $(VENV) bench/.venv build *.egg-info

# The cluster tests start a real redis-server and HAProxy: install them when missing.
test: cluster-test-deps
.PHONY: cluster-test-deps
cluster-test-deps:
	@sh .ci/cluster-test-deps.sh

# The operator page's tests drive a real headless Chromium: install Debian's when missing.
test: browser-test-deps
.PHONY: browser-test-deps
browser-test-deps:
	@sh .ci/browser-test-deps.sh
