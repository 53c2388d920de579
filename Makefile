# Two commands for a fresh machine: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/data/lai2024-ml-issues/issues
SAMPLE ?= 1500
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench layers lint

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	PYTHONWARNINGS=ignore $(BIN)/pip install -q -e '.[test]'  # quiet: setuptools' note on every editable install of a mapped package-dir
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/issuerisk run $(DATA) --sample $(SAMPLE)

test: $(STAMP) lint layers
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "chromium not installable: the report's browser test will skip"
	$(BIN)/pytest -q

# Formatting (ruff format, 120 columns) and lint (pyflakes, pycodestyle, import order) as pyproject.toml's [tool.ruff] says.
lint: $(STAMP)
	$(BIN)/ruff format --check -q . || (echo 'run: .venv/bin/ruff format .'; exit 1)
	$(BIN)/ruff check -q .

# The import contract of pyproject.toml ([tool.importlinter]) on a built copy of the package, lazy imports included.
layers: $(STAMP)
	rm -rf .build/layers && mkdir -p .build
	$(BIN)/pip install -q --no-deps --no-compile --target .build/layers . 2>.build/layers.log || (cat .build/layers.log; exit 1)
	cd .build/layers && $(CURDIR)/$(BIN)/lint-imports --no-cache $(CURDIR)/pyproject.toml  # from there: the checker puts its folder first on the path

bench: $(STAMP)
	$(BIN)/python -m bench.ingest
