# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test bench install install-test lint

install:
	./scripts/install.sh

install-test:
	./scripts/install.sh --test

## Install and run every service on 127.0.0.1:8000 (SQLite and the embedded log, data in ./.relais).
run: install
	.venv/bin/relais run

## Install (with the test brokers) and run the whole test suite.
test: install-test
	.venv/bin/python -m pytest

## Benchmarks (not tests): print the table recorded in docs/performance.md (about 2.5 minutes).
bench: install-test
	.venv/bin/python benchmarks/run_all.py

lint:
	.venv/bin/ruff check shared services relais tests
