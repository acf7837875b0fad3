# Developer entry points. `make demo` and `make test` are the two commands a new user needs;
# both install what they need first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed (Python 3.11+)"; exit 1; }
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		missing=""; \
		for pkg in orthanc orthanc-dicomweb dcmtk nginx; do \
			dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
		done; \
		if [ -n "$$missing" ]; then \
			echo "Installing Debian packages the tests and benchmark run against:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

demo: install
	$(BIN)/aperture demo

test: install
	$(BIN)/python -m pytest

bench: install
	$(BIN)/python bench/run.py
	$(BIN)/python bench/fidelity.py

lint: install
	$(BIN)/ruff check aperture tests bench
	$(BIN)/ruff format --check aperture tests bench

format: install
	$(BIN)/ruff format aperture tests bench
	$(BIN)/ruff check --fix aperture tests bench

clean:
	rm -rf $(VENV) .pytest_cache
