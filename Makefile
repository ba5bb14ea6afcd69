# Two commands do everything on a fresh machine:
#   make demo   set up, generate the sample, run every pipeline stage (`kale run`: both
#               KALE stages, teacher and student) on local Spark + Delta
#   make test   set up, run the whole test suite
#   make lint   ruff check + ruff format --check (CI runs it before the tests)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps
SAMPLE_ROWS ?= 120

.PHONY: setup jvm-archive bytecode demo test lint bench bench-fusion clean-lake dist conf bench-fetch bench-scale bench-report chaos

setup: $(STAMPS)/venv jars jvm-archive bytecode

$(STAMPS)/venv: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev,spark]"
	mkdir -p $(STAMPS) && touch $@

# Delta's jars: fetched with mvn into ~/.m2 unless they are already there.
# The coordinate comes from the installed delta-spark (kale_spark/spark/jars.py).
jars: $(STAMPS)/venv
	$(BIN)/python -m kale_spark.spark.jars ensure

# The package's bytecode, once: every `kale` command and every Spark Python worker
# imports kale_spark, and where PYTHONDONTWRITEBYTECODE is set (CI images often set it)
# each process would compile it from source again (~0.05 s of CPU per process).
bytecode: $(STAMPS)/venv
	$(BIN)/python -m compileall -q kale_spark

# The driver JVM's class-data-sharing archive (kale_spark/spark/jvm.py): built once per
# machine, JDK and Spark/Delta jars (about 30 s); local sessions map it at start.
jvm-archive: jars
	$(BIN)/python -m kale_spark.spark.jvm archive

demo: setup
	$(BIN)/kale demo --config conf/local.yaml --rows $(SAMPLE_ROWS)

# Two test processes: much of a Spark test's time is one-threaded (the driver's
# planning, JVM and Python worker starts), so a second process uses the idle core.
# A module's tests, and the modules sharing an expensive session fixture, run in one
# process (tests/conftest.py), in collection order: the long cluster group starts first.
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder

# SIGKILL `kale run` at random moments (CHAOS_KILLS times per round), then finish it;
# the gold table must equal an uninterrupted run's, with no duplicate key
# (docs/reliability.md). Prints runs, kills, mismatches; non-zero on any mismatch.
CHAOS_SEED   ?= 0
CHAOS_ROUNDS ?= 1
CHAOS_KILLS  ?= 3
chaos: setup
	$(BIN)/python -m tests.reliability.chaos --seed $(CHAOS_SEED) --rounds $(CHAOS_ROUNDS) --kills $(CHAOS_KILLS)

# The library as a cluster user ships it: a wheel (pip install / a Databricks library)
# and a zip of the same files for spark-submit --py-files (Spark puts .zip, not .whl,
# on the executors' sys.path). DIST_PY: any Python with setuptools and wheel.
DIST     ?= dist
DIST_PY  ?= $(BIN)/python
VERSION  := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
dist:
	rm -rf $(DIST)/.build && mkdir -p $(DIST)/.build
	$(DIST_PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(DIST) .
	cd $(DIST)/.build && $(DIST_PY) -m zipfile -e ../kale_spark-$(VERSION)-py3-none-any.whl . \
	  && rm -rf kale_spark-*.dist-info && $(DIST_PY) -m zipfile -c ../kale_spark-$(VERSION).zip kale_spark
	rm -rf $(DIST)/.build
	@ls $(DIST)/kale_spark-$(VERSION)*

# Rewrite the spark.jars.* lines of the Spark properties files from kale_spark/spark/jars.py.
conf: $(STAMPS)/venv
	$(BIN)/python -m kale_spark.spark.jars sync-conf conf/spark/*.conf

LINT_PATHS := kale_spark jobs tests bench notebooks

lint: $(STAMPS)/venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)

# kale fetch vs img2dataset on the same URLs from a local server (prints one JSON line).
BENCH_FETCH_URLS ?= 3000
bench-fetch: setup
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python bench/fetch_throughput.py --urls $(BENCH_FETCH_URLS) --workdir /tmp/kale-fetch-bench

# Caption throughput under bench/RESULTS.md's method, for a quiet machine (a few hours
# on 2 cores): `kale caption` as a whole command against the project's engine in a plain
# loop, a naive transformers loop, Ray Data and Daft; batch sizes swept first; 256, 1024
# and 4096 images, 3 rounds each, order alternated. Writes bench/figures/caption-<device>.json
# and kale's rate to bench/figures/<device>.json (kale plan), then bench/RESULTS.md.
BENCH_SIZES   ?= 256,1024,4096
BENCH_REPEATS ?= 3
bench: setup
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/caption_throughput.py --sizes $(BENCH_SIZES) --repeats $(BENCH_REPEATS) --workdir bench/work
	$(BIN)/python bench/report.py

# The fusion LLM's tokens/s: still the old method (stage time, one run), marked so.
bench-fusion: setup
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/fusion_throughput.py --workdir bench/work

# Every stage at two sizes ten times apart (model stages 10^4 and 10^5 rows, the others
# 10^5 and 10^6): growth, rows per file, driver RSS, caption vs the raw engine loop,
# ingest vs plain Spark. About an hour on 2 cores. Writes bench/figures/scale-cpu.json.
bench-scale: setup
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	$(BIN)/python bench/scale.py

# bench/RESULTS.md from the figures files (no measuring).
bench-report: $(STAMPS)/venv
	$(BIN)/python bench/report.py

clean-lake:
	rm -rf lake data/sample
