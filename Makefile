# The two commands a user needs: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tumsyn-installed
EXAMPLE := src/tumsyn/examples/sub-icbm152/anat/sub-icbm152_T1w.nii.gz

.PHONY: setup demo test test-slow bench lint format clean

setup: $(STAMP)

# The CPU build of torch is installed only when the venv has none, so that a CUDA build a user
# installed into .venv beforehand is kept.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/tumsyn info $(EXAMPLE)

# pytest exits with 5 when it collected no test at all; that is a failure for us, said plainly.
test: setup
	@$(PY) -m pytest -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-slow: setup
	$(PY) -m pytest -m slow

bench: setup
	@for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

lint: setup
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts

format: setup
	$(PY) -m ruff format src tests benchmarks scripts
	$(PY) -m ruff check --fix src tests benchmarks scripts

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
