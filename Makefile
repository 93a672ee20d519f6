# Two entry points a new user needs: `make up` (run the hub) and `make test` (run the suite).
# Both create .venv, install the project and resolve the embedded Kafka broker's jars.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test install broker-jars test-deps lint bench chaos screenshots clean
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

$(STAMP): pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

broker-jars: $(STAMP)
	$(BIN)/lienthong broker --fetch-only

# Debian's Chromium and its WebDriver (tests/browser; Selenium never downloads a browser) and
# promtool from Debian's prometheus package (the alert rules are checked by it).
test-deps:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null \
	  && command -v promtool >/dev/null \
	  || { $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium chromium-driver prometheus; }

up: install broker-jars
	$(BIN)/lienthong up

test: install broker-jars test-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

# The README's pictures of the demo (board, tracking slip, scoreboard), retaken by the browser
# test so they stay true to the dashboard.
screenshots: install test-deps
	LIENTHONG_SCREENSHOTS=docs/screenshots $(BIN)/pytest tests/browser/test_demo_screenshots.py -q

# Fault scenarios under load (a few minutes each; bounded): kill -9 of workers, a broker of
# three, the gateway with a spool; destinations down or slow; the broker down. Prints a table.
chaos: install broker-jars
	$(BIN)/lienthong chaos

bench: install broker-jars
	@for script in bench/bench_*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

clean:
	rm -rf $(VENV) .cache var
