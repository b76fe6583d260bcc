PYTHON ?= python3
HOST ?= 127.0.0.1
PORT ?= 8000
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --disable-pip-version-check -q -c requirements/constraints.txt

.PHONY: install run test test-slow lint audit screenshot bench bench-extra bench-quick bench-api bench-gpu clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/activate
	$(PIP) torch==2.13.0
	$(PIP) -e '.[service,dev]'
	$(PIP) --no-deps -r requirements/no-deps.txt
	$(PIP) -e client

run: install
	$(BIN)/python -m launcher.embedded --host $(HOST) --port $(PORT)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest

# The checks marked slow (minutes of CPU each); `make test` leaves them out.
test-slow: install
	$(BIN)/python -m pytest -m slow

audit: install
	$(BIN)/python .ci/dependency_audit.py

# BENCHMARKS.md from the current commit (the grid: 60 min with 2 workers on a busy 2-core
# machine; resumes from benchmarks/.cache when the engine is unchanged).
bench: install
	$(BIN)/python -m benchmarks.report

# The studies behind the defaults and the format, each into benchmarks/results (hours).
bench-extra: install
	$(BIN)/python -m benchmarks.pruning_baselines
	$(BIN)/python -m benchmarks.deeplift_variants
	$(BIN)/python -m benchmarks.attribution_speed
	$(BIN)/python -m benchmarks.sharing_and_precision
	$(BIN)/python -m benchmarks.real_archs --images 20000
	$(BIN)/python -m benchmarks.deployable_onnx
	$(BIN)/python -m benchmarks.kmeans_memory

bench-gpu: install  # on a CUDA machine: all-layer DeepLIFT vs training step, one whole job
	$(BIN)/python -m benchmarks.gpu

bench-quick: install
	$(BIN)/python -m benchmarks.report --quick

# The API under 10/30/50/100 pollers, then the whole service under 200 pollers + 20 uploads +
# 10 jobs (about 20 minutes on a busy 2-core machine: each mode runs its 12 jobs one at a
# time); distributed needs the machine's Postgres and Redis.
bench-api: install
	$(BIN)/python -m benchmarks.api_load
	$(BIN)/python -m benchmarks.api_load --mode distributed
	nice -n 10 $(BIN)/python -m benchmarks.service_load

# The README's report screenshot, from the current code (needs Debian's chromium).
screenshot: install
	$(BIN)/python docs/readme_screenshot.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
