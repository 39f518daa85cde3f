# Two commands are all the set-up there is: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt
DEMO_OUT ?= runs/demo-64
CLASSIFIER ?= runs/classifier-synthetic-64.safetensors

.PHONY: demo test lint install dev clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: $(VENV)/bin/python pyproject.toml constraints.txt
	$(PIP) torch==2.13.0
	$(PIP) -e '.[plot]'
	touch $@

$(VENV)/.dev-installed: $(VENV)/.installed
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed
dev: $(VENV)/.dev-installed

# The demo: the model summary, a small classifier for the sample-quality score (trained once, cached),
# then the demo-64 preset on the built-in synthetic dataset. Rerunning resumes (or just reports the end).
demo: $(VENV)/.installed
	$(VENV)/bin/tganv2 summary --preset demo-64
	test -f $(CLASSIFIER) || $(VENV)/bin/tganv2 evaluate train-classifier --out $(CLASSIFIER)
	$(VENV)/bin/tganv2 train --preset demo-64 --out $(DEMO_OUT) train.classifier=$(CLASSIFIER)

test: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(PY) -m pytest -n 2 -q

lint: $(VENV)/.dev-installed
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache build dist
