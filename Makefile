# Every target creates .venv when missing. torch is installed first and pinned (TORCH_SPEC) so a
# fresh machine takes the local CPU build instead of a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test bench lint clean

$(BIN)/beliefgeo: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,llc]"
	touch $@

demo: $(BIN)/beliefgeo
	$(BIN)/beliefgeo reproduce mess3 --out runs/mess3-demo

test: $(BIN)/beliefgeo
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow"

bench: $(BIN)/beliefgeo
	$(BIN)/python -m benchmarks.run

lint: $(BIN)/beliefgeo
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
