# vittle: `make demo` and `make test` set everything up on a fresh machine with Python 3.11.
# GPU users: make test TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3.11
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall only when the dependency list changes.
STAMP := $(VENV)/.vittle-installed

# The lowest transformers pyproject.toml allows (keep equal to its `transformers>=` floor).
TRANSFORMERS_FLOOR ?= 5.17.0
FLOOR_VENV ?= .venv-floor
# A quick subset that touches every transformers internal vittle relies on: Trainer overrides, attach +
# gradient checkpointing, loading, checkpoints, a tiny training run, merge.
FLOOR_TESTS ?= tests/unit/test_train_compat.py tests/unit/test_attach.py tests/unit/test_attach_recompute.py tests/unit/test_load.py \
	tests/unit/test_checkpoint.py tests/integration/test_train_cli.py tests/integration/test_merge.py

.PHONY: demo study test test-floor lint docs gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# torch first, so pip does not resolve `torch>=...` to a different (e.g. CUDA) build on its own.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Train the tiny model with Vittle and as the baseline, evaluate both under shift, compare (~5 min, CPU).
demo: $(STAMP)
	VITTLE=$(BIN)/vittle bash scripts/demo.sh

# The demo's two recipes with 3 seeds each, compared over seeds with bootstrap intervals (~3x the demo).
study: $(STAMP)
	VITTLE=$(BIN)/vittle bash scripts/study.sh

# One torch thread per xdist worker: the tiny models gain nothing from more, and workers would fight.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto

# The same code against the transformers floor: a second venv that sees the main one's packages (a .pth
# file) and overrides only transformers and what that version pins (huggingface_hub): ~1 min to install.
test-floor: $(STAMP)
	test -x $(FLOOR_VENV)/bin/python || $(BIN)/python -m venv $(FLOOR_VENV)
	$(BIN)/python -c 'import site; print(site.getsitepackages()[0])' > "$$($(FLOOR_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/vittle-main.pth"
	$(FLOOR_VENV)/bin/python -m pip install --quiet "transformers==$(TRANSFORMERS_FLOOR)"
	PYTHONPATH=$(CURDIR) OMP_NUM_THREADS=1 $(FLOOR_VENV)/bin/python -m pytest -q -n 2 $(FLOOR_TESTS)

lint: $(STAMP)
	$(BIN)/ruff check vittle_cli tests
	$(BIN)/ruff format --check vittle_cli tests

# Regenerate the recipe reference in docs/recipes.md from the schema (a test fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -c 'import pathlib; from vittle_cli.recipe import recipe_reference_markdown as ref; \
	p = pathlib.Path("docs/recipes.md"); b, e = "<!-- BEGIN GENERATED: recipe reference -->\n", "<!-- END GENERATED: recipe reference -->"; \
	t = p.read_text(); p.write_text(t[: t.index(b) + len(b)] + ref() + t[t.index(e):])'

# On a CUDA machine, offline, ~8 min: the gpu tests, both GPU benchmarks, MFU, memory plan vs peak ->
# gpu-check/gpu_check.json + gpu_check.md. Uses the machine's own Python (torch + transformers already there),
# not the venv (whose install would download a CPU torch). Optional wheels: GPU_CHECK_WHEELS=dir (deepspeed,
# bitsandbytes, datasets); see docs/performance.md.
GPU_CHECK_PYTHON ?= python3
GPU_CHECK_WHEELS ?=
gpu-check:
	GPU_CHECK_WHEELS="$(GPU_CHECK_WHEELS)" PYTHONPATH=$(CURDIR) $(GPU_CHECK_PYTHON) scripts/gpu_check.py --out gpu-check
