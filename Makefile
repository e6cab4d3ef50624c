# Every target sets up what it needs on a fresh Debian machine (apt packages, venv, pinned
# pip install) and is idempotent.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FIXTURES ?= $(abspath ../shared/fixtures)
DEMO_OUT ?= demo_out

.PHONY: setup system test lint demo bench clean

setup: system $(STAMP)

system:
	@bash scripts/setup_system.sh

$(STAMP): pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements/lock.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

lint: setup
	$(BIN)/ruff check wit_builder jobs tests benchmarks

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

demo: setup
	$(BIN)/wit querylist --config configs/demo.yaml \
		--wiki-dump "$(FIXTURES)/wikipedia/*.bz2" --out $(DEMO_OUT)/querylist
	@$(BIN)/wit show $(DEMO_OUT)/querylist
	$(BIN)/wit curate --config configs/demo.yaml --warc "$(FIXTURES)/warc/*" \
		--entries $(DEMO_OUT)/querylist --out $(DEMO_OUT)/curate
	@$(BIN)/wit show $(DEMO_OUT)/curate

bench: setup
	WIT_FIXTURES=$(FIXTURES) $(BIN)/python benchmarks/run.py
	$(BIN)/python benchmarks/images.py --json bench_out/images.json
	$(BIN)/python benchmarks/overlap.py --json bench_out/overlap.json
	WIT_FIXTURES=$(FIXTURES) $(BIN)/python benchmarks/clip_train.py --model tiny \
		--variants open_clip,ours,ours_grouped,ours_groups4 --json bench_out/clip_train.json

clean:
	rm -rf $(DEMO_OUT) bench_out .pytest_cache .ruff_cache
