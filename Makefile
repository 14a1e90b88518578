# vittle: `make demo` and `make test` set everything up on a fresh machine with Python 3.11.
# GPU users: make test TORCH_SPEC="torch==2.13.0" TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cu128"

PYTHON ?= python3.11
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
VENV ?= .venv
BIN := $(VENV)/bin
# Reinstall only when the dependency list changes.
STAMP := $(VENV)/.vittle-installed

.PHONY: demo test test-lowest lint docs

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

# One torch thread per xdist worker: the tiny models gain nothing from more, and workers would fight.
test: $(STAMP)
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -q -n auto

# The lowest transformers pyproject allows, in a second environment: 5.17-5.22 re-run the decoder layer's
# hooks in the gradient-checkpointing recompute (the bottleneck hook must survive it). A quick subset.
LOWEST_TRANSFORMERS ?= transformers==5.17.*
LOWEST_VENV ?= .venv-lowest
$(LOWEST_VENV)/.vittle-installed: pyproject.toml
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(LOWEST_VENV)/bin/python -m pip install --quiet -e ".[dev]" "$(LOWEST_TRANSFORMERS)"
	touch $@

test-lowest: $(LOWEST_VENV)/.vittle-installed
	OMP_NUM_THREADS=1 $(LOWEST_VENV)/bin/python -m pytest -q -n auto tests/unit/test_attach.py \
		tests/unit/test_attach_recompute.py tests/unit/test_checkpoint.py tests/unit/test_loss.py

lint: $(STAMP)
	$(BIN)/ruff check vittle_cli tests
	$(BIN)/ruff format --check vittle_cli tests

# Regenerate the recipe reference in docs/recipes.md from the schema (a test fails when it is stale).
docs: $(STAMP)
	$(BIN)/python -c 'import pathlib; from vittle_cli.recipe import recipe_reference_markdown as ref; \
	p = pathlib.Path("docs/recipes.md"); b, e = "<!-- BEGIN GENERATED: recipe reference -->\n", "<!-- END GENERATED: recipe reference -->"; \
	t = p.read_text(); p.write_text(t[: t.index(b) + len(b)] + ref() + t[t.index(e):])'
