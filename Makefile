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
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest

# The most complete end-to-end path so far: reference data -> store -> fit -> optimum; plan a sweep.
DEMO        := demo
MOESCALE    := $(BIN)/moescale
CHINCHILLA  := --law chinchilla --map N='"Model Size"' --map D='"Training FLOP"/(6*"Model Size")' --y loss \
               --where 'loss < (SELECT loss FROM data ORDER BY loss DESC LIMIT 1 OFFSET 4)'

demo: $(STAMP)
	rm -rf $(DEMO) && mkdir -p $(DEMO)
	$(MOESCALE) datasets list
	$(MOESCALE) db import chinchilla_epoch --name chinchilla --store $(DEMO)/moescale.duckdb
	$(MOESCALE) db sql "SELECT count(*) AS runs, min(loss) AS best_loss FROM chinchilla" --store $(DEMO)/moescale.duckdb
	$(MOESCALE) fit chinchilla $(CHINCHILLA) --bootstrap 1000 --store $(DEMO)/moescale.duckdb --json $(DEMO)/chinchilla_fit.json
	$(MOESCALE) optimum --fit $(DEMO)/chinchilla_fit.json --compute 1e21 1e22 1e23 5.76e23
	$(MOESCALE) db sql "SELECT fit_id, law, n_points, objective FROM fits" --store $(DEMO)/moescale.duckdb
	$(MOESCALE) plan count --d-model 512 --n-layers 16 --n-heads 4 --d-ff 1024 --n-experts 8 --top-k 2 --vocab 99574
	$(MOESCALE) plan grid --preset cpu-tiny --out $(DEMO)/cpu-tiny.yaml
	@echo "demo: outputs in $(DEMO)/ (store $(DEMO)/moescale.duckdb, fit $(DEMO)/chinchilla_fit.json, sweep $(DEMO)/cpu-tiny.yaml)"

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) demo *.egg-info
