# Two entry points, each working on a fresh machine with only Python 3.11:
#   make demo   set up .venv and certify the bundled MNIST CNN
#   make test   set up .venv with the test extras and run the test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test setup setup-test fixtures bench bench-reference clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	# torch first, pinned: this version is a local CPU wheel; anything else downloads a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet torch==2.13.0

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

setup: $(VENV)/.installed
setup-test: $(VENV)/.installed-test

demo: setup
	$(BIN)/srp-audit certify fixtures/mnist_cnn.onnx --eps 0.02

test: setup-test
	$(BIN)/python -m pytest -q

fixtures: setup-test
	$(BIN)/python fixtures/make_fixtures.py

bench: setup-test
	$(BIN)/python benchmarks/bench_ibp.py

# auto_LiRPA 0.7.1 (../shared/reference) pins torch < 2.9, so it lives in its own scratch environment, never in
# the project's dependencies; bench_reference.py runs there, with srp-audit installed beside it.
REF := .venv-reference
$(REF)/.installed: pyproject.toml
	$(PYTHON) -m venv $(REF)
	$(REF)/bin/python -m pip install --quiet torch==2.13.0
	$(REF)/bin/python -m pip install --quiet numpy scipy tqdm packaging appdirs graphviz
	$(REF)/bin/python -m pip install --quiet --no-deps -e ../shared/reference/auto_LiRPA-0.7.1
	$(REF)/bin/python -m pip install --quiet -e .
	touch $@

bench-reference: $(REF)/.installed
	cd benchmarks && ../$(REF)/bin/python bench_reference.py

clean:
	rm -rf $(VENV) build *.egg-info
