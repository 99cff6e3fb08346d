# Two commands on a fresh machine:  make demo   |   make test
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-sanitize lint soak bench wheel clean

$(STAMP): pyproject.toml setup.py bot4/shm/_native.c bot4/shm/_gate.inc bot4/shm/_guard.inc bot4/shm/_ledger.inc bot4/shm/_events.inc
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bot4 demo

test: $(STAMP)
	tools/ensure-services
	$(PY) -m pytest

test-sanitize: $(STAMP)
	tools/sanitize-test

# ruff (lint and format) over everything, mypy --strict over the library.
lint: $(STAMP)
	$(PY) -m pip install --quiet -e '.[lint]'
	$(PY) -m ruff check bot4 tests benches examples
	$(PY) -m ruff format --check bot4 tests benches examples
	$(PY) -m mypy --strict bot4

# Long runs, not part of `make test`: the fleet's Jepsen-style run for five minutes, and
# forty rounds of crashing a whole journaled desk (eight in `make test`).
soak: $(STAMP)
	tools/ensure-services
	BOT4_JEPSEN_SECONDS=300 $(PY) -m pytest tests/fleet/test_jepsen.py -o timeout=900
	BOT4_CRASH_ROUNDS=40 $(PY) -m pytest tests/journal/test_crash.py -o timeout=1200

bench: $(STAMP)
	tools/ensure-services
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) -m pytest benches --benchmark-only --benchmark-columns=median,mean,stddev,rounds

clean:
	rm -rf $(VENV) build dist *.egg-info bot4/shm/*.so

# A wheel users install without a compiler: the sdist and the wheel (built from the sdist) into
# dist/, the wheel repaired by auditwheel to the manylinux tag this machine's glibc allows.
wheel: $(STAMP)
	$(PY) -m pip install --quiet -e '.[dist]'
	rm -f dist/bot4-*
	$(PY) -m build --outdir dist .
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/auditwheel repair --wheel-dir dist dist/bot4-*-linux_*.whl
	rm -f dist/bot4-*-linux_*.whl
	ls dist/bot4-*
