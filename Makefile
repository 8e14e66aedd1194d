# fleet: the two set-up commands are `make run` (the cluster on http://127.0.0.1:8080) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080

.PHONY: install run test test-unit images bench soak chaos lint format clean

install: $(VENV)/.installed
	@bin/ensure-nginx

# Re-install only when the package list changes; uWSGI compiles from source (~30 s, once).
$(VENV)/.installed: pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	@echo "installing Python packages into $(VENV) (uWSGI compiles once, ~30 s)..."
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $@

run: install
	$(BIN)/fleet up --port $(PORT)

test: install
	$(BIN)/pytest

test-unit: install
	$(BIN)/pytest tests/unit

images:
	@docker/build-images

bench: install
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m bench

# The soak (soak/): churn under load for MINUTES (default 10); fails on a lost request or a leak.
MINUTES ?= 10
soak: install
	@$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python -m soak --minutes $(MINUTES)

# Chaos (chaos/): every part killed -9 under GET and POST load (under 10 minutes; QUICK=1: one kill each);
# writes bench/results/chaos/<UTC start>.json and the table generated from it (chaos.md; chaos-quick.md).
chaos: install
	$(BIN)/python -m chaos $(if $(QUICK),--quick)

# The linter, the formatter's check, the import contracts (pyproject.toml [tool.importlinter]) and the type checker.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy fleet

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) run .pytest_cache .ruff_cache *.egg-info
