# Fresh-machine setup, the main job and the tests. CI calls `make test` (see .ci/run).

VENV ?= .venv
PYTHON ?= python3
PIP = $(VENV)/bin/pip
# torch/torchvision come from this machine's local wheel store (see docs/install.md).
TORCH = torch==2.14.1 torchvision==0.29.1
SYSTEM_PACKAGES = chromium chromium-driver poppler-utils
DEMO_OUT ?= demo-out

.PHONY: setup system-deps demo test lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH)
	$(PIP) install --quiet -e '.[test]'
	touch $@

# Chromium (browser tests, PDF export) and poppler (PDF checks) from Debian.
system-deps:
	@missing=""; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v chromedriver >/dev/null || missing="$$missing chromium-driver"; \
	command -v pdftoppm >/dev/null || missing="$$missing poppler-utils"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else echo "please install:$$missing (sudo apt-get install $(SYSTEM_PACKAGES))"; exit 1; fi; \
	fi

demo: setup system-deps
	$(VENV)/bin/probe demo --out $(DEMO_OUT)

test: setup system-deps
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest --headless -q -p no:cacheprovider

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf $(VENV) $(DEMO_OUT) build *.egg-info
