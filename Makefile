# Two commands do all the set-up on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

serve: $(BIN)/.installed
	$(BIN)/mcp-trio serve --transport http $(ARGS)

test: $(BIN)/.installed
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The standard comparison (about 10 minutes on 2 cores): every scenario against the floors,
# ours, the official SDK and FastMCP; writes bench/results/<date>-<host>.json and .md. The peer
# servers are installed into bench/.venv by the script itself, never into .venv.
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
