# Two entry points a new user needs: `make up` (run the hub) and `make test` (run the suite).
# Both create .venv, install the project and resolve the embedded Kafka broker's jars.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install broker-jars browser-deps lint bench chaos clean

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

broker-jars: $(STAMP)
	$(BIN)/lienthong broker --fetch-only

# Debian's Chromium and its WebDriver for tests/browser (root; Selenium never downloads one).
browser-deps:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y chromium chromium-driver)

up: install broker-jars
	$(BIN)/lienthong up

test: install broker-jars
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

bench: install broker-jars
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .cache var
