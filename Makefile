# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint install bench bench-backends bench-keys demo clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Reinstall when the dependency list changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e . --group dev
	touch $(STAMP)

# Azurite (the Azure Blob stand-in) comes from npm, into .tools/node.
AZURITE := .tools/node/node_modules/.bin/azurite-blob
$(AZURITE):
	mkdir -p .tools/node
	npm install --silent --no-audit --no-fund --prefix .tools/node azurite@3

install: $(STAMP) $(AZURITE)

## make run: start OpenBao (dev) + the gateway on http://127.0.0.1:9000, print credentials.
run: $(STAMP)
	$(BIN)/blindstore dev

## make test: lint, type-check and run the whole test suite (starts OpenBao itself).
test: $(STAMP) $(AZURITE) lint
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

## make demo: OpenBao, SeaweedFS, moto, Azurite, the GCS emulator and the gateway, hybrid placement.
demo: $(STAMP) $(AZURITE)
	$(BIN)/blindstore demo

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_gateway.py

## make bench-backends: PUT/GET MB/s through the gateway vs direct, on each storage stand-in.
bench-backends: $(STAMP) $(AZURITE)
	$(BIN)/python benchmarks/bench_backends.py

## make bench-keys: Vault calls per object and 4 KiB ops/s: no pool, pool + cache, bucket keys.
bench-keys: $(STAMP)
	$(BIN)/python benchmarks/bench_keys.py

clean:
	rm -rf $(VENV) .tools .blindstore .blindstore-demo .pytest_cache .mypy_cache .ruff_cache
