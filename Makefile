# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use (tools/setup_env.sh; the first run compiles
# mmcv's ops once, 15-20 min) and take seconds to set up afterwards.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup demo search test test-fast bench clean

setup:
	@bash tools/setup_env.sh

demo: setup
	$(PY) tune/search.py

# a search that decides on the built-in data, 6 samples then the best 2 and the
# default with 5 seeds each (47 min measured on 2 cores from a fresh machine,
# 34 with the base detector cached); its record and
# table go to benchmarks/results/search.{json,md}. SEARCH_ARGS go to tune/search.py.
search: setup
	$(PY) benchmarks/search.py $(SEARCH_ARGS)

# the browser test's Chromium (tools/setup_browser.sh): apt-get, as root, once.
# Three test files at a time (pytest-xdist, a file's tests together, so its
# module fixtures are built once). The end-to-end tests spend most of their
# time waiting on processes that start one after another: two at a time kept
# 2 cores 49 % busy (measured), a third fills the gaps. More would put more
# local Ray instances, each with its trainings, on one machine's memory.
# Files start longest first (tests/conftest.py, tests/module_seconds.json).
# TEST_WORKERS=0 runs them one at a time.
TEST_WORKERS ?= 3
test: setup
	@bash tools/setup_browser.sh
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# speed and memory tables (tens of minutes on 2 cores); accuracy: see README
bench: setup
	$(PY) benchmarks/rank_sort.py
	$(PY) benchmarks/head.py --repeats 2
	$(PY) benchmarks/train_step.py
	$(PY) benchmarks/eval.py

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
