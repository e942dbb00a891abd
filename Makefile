# djsmile: the commands of the README.
#   make run   - create .venv, install djsmile, start the detector (ARGS="--source clip.mp4")
#   make check - while editing: ruff, then the tests not marked slow (no apt, no sudo)
#   make test  - install system packages (apt) and test dependencies, run the test suite
PYTHON ?= python3
VENV   ?= .venv
ARGS   ?=
PYTEST_ARGS ?=
BIN     = $(VENV)/bin

.PHONY: run check test venv deps install-dev clean

# --system-site-packages: on a Pi, picamera2 and lgpio come from apt (python3-picamera2, python3-lgpio)
$(BIN)/python:
	@echo "make: creating the virtual environment $(VENV) (python3 -m venv --system-site-packages)"
	$(PYTHON) -m venv --system-site-packages $(VENV) || { echo "python3-venv missing: sudo apt-get install -y python3-venv"; exit 1; }
	@echo "make: upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip

# scripts/pip-install.sh keeps apt's numpy on a Pi (numpy==<apt's> for pip), so python3-picamera2 still imports.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	@echo "make: installing djsmile and what it runs on (numpy, OpenCV, LiteRT...) into $(VENV) with pip; a minute or more when they are downloaded"
	./scripts/pip-install.sh $(BIN)/python $(PYTHON) --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	@echo "make: installing the test and training packages (pytest, TensorFlow...) into $(VENV) with pip; several minutes when they are downloaded"
	./scripts/pip-install.sh $(BIN)/python $(PYTHON) --quiet -e '.[dev,train]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	@echo "make: starting $(strip djsmile run $(ARGS)) (Ctrl+C stops it)"
	$(BIN)/djsmile run $(ARGS)

deps:
	@echo "make: checking the system packages the tests use (apt, via sudo when one is missing)"
	./scripts/install-system-deps.sh

# ruff first (seconds; its rules are in pyproject.toml), then the fast tests; a ruff finding stops it.
check: $(VENV)/.installed-dev
	@echo "make: ruff check . (the rules: pyproject.toml; '$(BIN)/ruff check --fix .' mends the mechanical ones)"
	$(BIN)/ruff check .
	@echo "make: running the fast tests (pytest -m 'not slow' $(PYTEST_ARGS); 'make test' runs them all)"
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

test: deps $(VENV)/.installed-dev
	@echo "make: running the test suite (pytest $(PYTEST_ARGS))"
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
