# parkweb: `make run` for a local demo, `make test` for the whole suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed-$(shell cat requirements.txt requirements-dev.txt | sha1sum | cut -c1-12)

.PHONY: install run demo-calls test lint format sandbox sandbox-stop clean

$(INSTALLED): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@rm -f $(VENV)/.installed-*
	@touch $@

install: $(INSTALLED)

run: install
	@scripts/run-demo

# Beside `make run`: demo calls that park, wait, and are picked up or time out.
demo-calls: install
	DEBUG=1 $(BIN)/python manage.py demo_calls

# Tests run on PostgreSQL when one answers on 127.0.0.1:5432 (as production and CI do),
# else on SQLite. DATABASE_URL overrides.
LOCAL_PG := postgres://postgres@127.0.0.1:5432/parkweb_test
TEST_DB = $(or $(DATABASE_URL),$(shell pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && echo $(LOCAL_PG)))

test: install
	scripts/asterisk-sandbox build
	scripts/ensure-chromium
	scripts/ensure-phones
	scripts/ensure-nginx
	$(BIN)/ruff check .
	$(BIN)/python manage.py makemigrations --check --dry-run
	@echo "make test: database $(or $(TEST_DB),SQLite)"
	scripts/run-tests $(TEST_DB)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

sandbox:
	scripts/asterisk-sandbox start --name demo --ami-port 5040

sandbox-stop:
	scripts/asterisk-sandbox stop --name demo

clean:
	rm -rf $(VENV) db.sqlite3 .pytest_cache .ruff_cache .hypothesis
