# s3drive developer tasks. `make run` works on a fresh checkout: it creates .venv,
# installs the pinned requirements (again only when they change), and starts the
# dev stack (MiniStack S3 + API + example frontend) on http://127.0.0.1:5000/.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-m "not e2e" -x'
PYTEST_ARGS ?=
# Extra dev-server arguments, e.g. make run RUN_ARGS='--port 8000'
RUN_ARGS ?=
BENCH_ARGS ?=
# Reinstall when a requirements file is newer than this stamp.
STAMP := $(VENV)/.requirements.stamp

.DEFAULT_GOAL := help
.PHONY: help venv run test lint bench clean clean-data distclean

help:
	@echo "make run        start the dev stack (MiniStack S3 + API + frontend) on http://127.0.0.1:5000/"
	@echo "make test       run the whole test suite (PYTEST_ARGS='...' to pass options)"
	@echo "make lint       ruff check and ruff format --check"
	@echo "make bench      run the benchmarks in bench/"
	@echo "make venv       create $(VENV) and install requirements-dev.txt"
	@echo "make clean      remove caches and test artifacts (keeps data/ and $(VENV))"
	@echo "make clean-data remove the dev stack's data/ (objects, database, demo password, JWT secret)"
	@echo "make distclean  clean, and remove $(VENV) and .cache/ (MiniStack's venv)"

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml Makefile | $(PY)
	$(PY) -m pip install --disable-pip-version-check --quiet -r requirements-dev.txt
	@# s3drive itself, editable: puts the s3drive and s3drive-client commands in $(VENV)/bin.
	$(PY) -m pip install --disable-pip-version-check --quiet --no-deps -e .
	@touch $@

venv: $(STAMP)

run: $(STAMP)
	$(PY) -m s3drive.dev $(RUN_ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Each bench/*.py script measures against a baseline taken in the same run.
bench: $(STAMP)
	@set -e; found=; \
	for script in bench/*.py; do \
		[ -f "$$script" ] || continue; \
		case "$$script" in */_*|*/conftest.py) continue;; esac; \
		found=1; echo "== $$script"; $(PY) "$$script" $(BENCH_ARGS); \
	done; \
	[ -n "$$found" ] || { echo "no bench/*.py scripts found" >&2; exit 1; }

clean:
	rm -rf .pytest_cache .ruff_cache test-artifacts
	find . -path ./$(VENV) -prune -o -path ./.cache -prune -o -name __pycache__ -type d -exec rm -rf {} +

clean-data:
	rm -rf data

distclean: clean
	rm -rf $(VENV) .cache
