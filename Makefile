# Two commands do everything on a fresh machine:
#   make demo   set up, generate the sample, run every pipeline stage (`kale run`: both
#               KALE stages, teacher and student) on local Spark + Delta
#   make test   set up, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps
SAMPLE_ROWS ?= 120

.PHONY: setup demo test lint clean-lake

setup: $(STAMPS)/venv jars

$(STAMPS)/venv: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	mkdir -p $(STAMPS) && touch $@

# Delta's jars: fetched with mvn into ~/.m2 unless they are already there.
# The coordinate comes from the installed delta-spark (kale_spark/jars.py).
jars: $(STAMPS)/venv
	$(BIN)/python -m kale_spark.jars ensure

demo: setup
	$(BIN)/kale demo --config conf/local.yaml --rows $(SAMPLE_ROWS)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check kale_spark jobs tests bench notebooks
	$(BIN)/ruff format --check kale_spark jobs tests bench notebooks

clean-lake:
	rm -rf lake data/sample
