# Each target creates or reuses .venv, installs the project with what the target needs, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/python -m decoding

test: $(STAMP)
	$(BIN)/python -m pytest -q

# Benchmarks: BLAS pinned to one thread. torch + transformers (the HF comparison) and ctranslate2
# are optional: pip takes the local CPU wheel for torch 2.13.0; if an install fails, the runner
# skips that system.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ENV := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	@echo '$(BIN)/python -m pip install --quiet "torch==2.13.0" transformers'
	@if $(BIN)/python -m pip install --quiet "torch==2.13.0" transformers; then touch $@; \
	else echo "bench: could not install torch==2.13.0 + transformers; HF will be skipped" >&2; fi
	@echo '$(BIN)/python -m pip install --quiet ctranslate2'
	@$(BIN)/python -m pip install --quiet ctranslate2 || \
	echo "bench: could not install ctranslate2; CTranslate2 will be skipped" >&2

bench: $(STAMP) $(BENCH_STAMP)
	$(BENCH_ENV) $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
