# Two entry points: `make demo` (main job on the offline default) and `make test`.
# Both build the virtualenv on first use. On a GPU machine, install your own torch
# first and `pip install -e .` instead; the pins below are the tested CPU set-up.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
OUT ?= runs/demo

.PHONY: demo test test-deepspeed lint format bench-classic bench-lm clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned to the local CPU wheel, so nothing later resolves a CUDA build
	$(PY) -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/rlhf-pg demo --out $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n 2 -q

# The DeepSpeed ZeRO-2/3 tests (2 CPU processes each), which `make test` skips without the
# optional extra: installs it (no compiled ops; DeepSpeed's CPU accelerator) and fails,
# instead of skipping, if it is still missing.
test-deepspeed: $(STAMP)
	DS_BUILD_OPS=0 $(PY) -m pip install --quiet --disable-pip-version-check \
		--no-build-isolation -c constraints.txt -e ".[deepspeed]"
	RLHF_PG_REQUIRE_DEEPSPEED=1 $(PY) -m pytest -q tests/test_lm_sharded.py

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
