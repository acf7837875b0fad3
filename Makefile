# Developer entry points. `make demo` and `make test` are the two commands a new user needs;
# both install what they need first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The prebuilt OHIF viewer the browser tests (tests/browser/) serve: fetched once from the npm registry.
OHIF_VERSION := 3.13.2
OHIF_CACHE := .cache/ohif/$(OHIF_VERSION)

.PHONY: install demo test bench lint format clean

install: $(STAMP) $(OHIF_CACHE)/dist/index.html $(OHIF_CACHE)/.precompressed
	@# bytecode for the package, as a wheel install would have: every `aperture` command starts
	@# without compiling its modules, even where PYTHONDONTWRITEBYTECODE is set (only what changed is redone)
	@$(BIN)/python -m compileall -q aperture

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) is needed (Python 3.11+)"; exit 1; }
	@if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null; then \
		missing=""; \
		for pkg in orthanc orthanc-dicomweb dcmtk dicom3tools nginx chromium fonts-dejavu-core postgresql; do \
			dpkg -s $$pkg >/dev/null 2>&1 || missing="$$missing $$pkg"; \
		done; \
		command -v npm >/dev/null || missing="$$missing npm"; \
		if [ -n "$$missing" ]; then \
			echo "Installing Debian packages the tests and benchmark run against:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		fi; \
	fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[test]"
	@touch $(STAMP)

$(OHIF_CACHE)/dist/index.html: | $(STAMP)
	@if ! command -v npm >/dev/null; then \
		echo "npm not found: OHIF $(OHIF_VERSION) is not fetched, so tests/browser/ will fail (install Node.js)"; \
	else \
		echo "Fetching OHIF $(OHIF_VERSION) (npm pack @ohif/app) into $(OHIF_CACHE)/dist for tests/browser/"; \
		rm -rf $(OHIF_CACHE)/download $(OHIF_CACHE)/dist && mkdir -p $(OHIF_CACHE)/download && \
		(cd $(OHIF_CACHE)/download && npm pack --loglevel=error @ohif/app@$(OHIF_VERSION) >/dev/null && \
			tar -xzf ohif-app-$(OHIF_VERSION).tgz package/dist) && \
		mv $(OHIF_CACHE)/download/package/dist $(OHIF_CACHE)/dist && rm -rf $(OHIF_CACHE)/download; \
	fi

# OHIF's brotli and gzip copies, made once here rather than by the first server start (about two
# minutes on two cores, the viewer served uncompressed meanwhile); again when the dist or its rewriting changes
$(OHIF_CACHE)/.precompressed: $(OHIF_CACHE)/dist/index.html aperture/viewer/dist.py | $(STAMP)
	@if [ -f $(OHIF_CACHE)/dist/index.html ]; then \
		echo "Precompressing OHIF $(OHIF_VERSION) for /viewer/ (once)"; \
		$(BIN)/python -m aperture.viewer.precompress && touch $@; \
	fi

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
	$(BIN)/mypy

format: install
	$(BIN)/ruff format aperture tests bench
	$(BIN)/ruff check --fix aperture tests bench

clean:
	rm -rf $(VENV) .pytest_cache
