# djsmile: the two commands of the README.
#   make run   - create .venv, install djsmile, start the detector (ARGS="--source clip.mp4")
#   make test  - install system packages (apt) and test dependencies, run the test suite
PYTHON ?= python3
VENV   ?= .venv
ARGS   ?=
PYTEST_ARGS ?=
BIN     = $(VENV)/bin

.PHONY: run test venv deps install-dev clean

# --system-site-packages: on a Pi, picamera2 and lgpio come from apt (python3-picamera2, python3-lgpio)
$(BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(VENV) || { echo "python3-venv missing: sudo apt-get install -y python3-venv"; exit 1; }
	$(BIN)/python -m pip install --quiet --upgrade pip

# scripts/pip-install.sh keeps apt's numpy on a Pi (numpy==<apt's> for pip), so python3-picamera2 still imports.
$(VENV)/.installed: $(BIN)/python setup.cfg pyproject.toml
	./scripts/pip-install.sh $(BIN)/python $(PYTHON) --quiet -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	./scripts/pip-install.sh $(BIN)/python $(PYTHON) --quiet -e '.[dev,train]'
	touch $@

venv: $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/djsmile run $(ARGS)

deps:
	./scripts/install-system-deps.sh

test: deps $(VENV)/.installed-dev
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build *.egg-info
