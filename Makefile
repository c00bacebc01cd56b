# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build of torch; on a GPU machine set TORCH=torch (a CUDA build) or use docker/Dockerfile.gpu.
TORCH  ?= torch==2.13.0
DEMO   ?= demo

.PHONY: setup demo test serve bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml setup.py $(wildcard operators/*.c)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[test]"
	touch $@

demo: setup
	$(BIN)/thresher demo-corpus $(DEMO)/corpus.parquet --docs 4000
	$(BIN)/thresher run examples/demo.yaml

serve: setup
	$(BIN)/thresher serve

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q --durations=25

bench: setup
	$(BIN)/python bench/bench_embed.py
	$(BIN)/python bench/bench_demo_fixed.py
	$(BIN)/python bench/bench_memory.py
	$(BIN)/python bench/bench_filters.py
	$(BIN)/python bench/bench_semdedup.py
	$(BIN)/python bench/bench_selection_fit.py
	$(BIN)/python bench/bench_workdir.py
	$(BIN)/python bench/bench_nightly.py
	$(BIN)/python bench/bench_neardup.py
	$(BIN)/python bench/bench_dedup.py --docs 20000 --workers 1 2 --datatrove

clean:
	rm -rf $(DEMO) bench/out
