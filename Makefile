# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test install install-test lint

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

lint:
	.venv/bin/ruff check shared services relais tests
