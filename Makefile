# The two commands a newcomer needs: `make run` (the main job: the toy world, end to end)
# and `make test`.
# Both create the virtual environment at .venv on first use and reuse it after.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: run test bench

$(STAMP): setup.cfg pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/python -m experiments.toyworld.main $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest -n 2 -q $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m experiments.benchmarks.run_all $(ARGS)
