# Every target creates .venv when missing. torch is installed first and pinned (TORCH_SPEC) so a
# fresh machine takes the local CPU build instead of a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test test-all bench lint clean

$(BIN)/beliefgeo: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e ".[dev,llc]"
	touch $@

demo: $(BIN)/beliefgeo
	$(BIN)/beliefgeo reproduce mess3 --out runs/mess3-demo

# test: the fast suite (<= 3 minutes on 2 idle cores; CI runs it); test-all: the slow tests too
# (Ray sweeps, SIGKILL and resume in subprocesses, whole studies). Both list the slowest tests.
test: $(BIN)/beliefgeo
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -m "not slow" --durations=10

test-all: $(BIN)/beliefgeo
	$(BIN)/ruff check .
	$(BIN)/python -m pytest --durations=20

bench: $(BIN)/beliefgeo
	$(BIN)/python -m benchmarks.run

lint: $(BIN)/beliefgeo
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) build *.egg-info
