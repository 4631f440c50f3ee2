# Two commands: `make demo` and `make test`. Both create .venv when missing and install into it.
PYTHON      ?= python3
VENV        ?= .venv
TORCH_SPEC  ?= torch==2.13.0
BIN         := $(VENV)/bin
STAMP       := $(VENV)/.installed
MOESCALE_DATA ?= $(abspath ../shared/datasets)
export MOESCALE_DATA

.PHONY: install test demo bench clean

install: $(STAMP)

# torch goes first and pinned: an unpinned torch pulls the newest multi-GB CUDA build.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_SPEC)"
	$(BIN)/python -m pip install -q -e ".[dev,hf]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The end-to-end path, offline on 2 CPU cores: plan the cpu-study-demo sweep, train it (finished runs are
# reused on a rerun), ingest, fit, test the claims, find the optimum per budget, draw the figures and
# write the report (demo/report/report.html), then the shipped cpu-study's report (demo/study/); see `moescale demo --help`.
DEMO        := demo
MOESCALE    := $(BIN)/moescale

demo: $(STAMP)
	$(MOESCALE) demo --out $(DEMO) --workers 2

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo *.egg-info
