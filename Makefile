# The two commands a newcomer needs: `make run` and `make test`.
.PHONY: run test bench install install-test lint fault-campaign attack

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

## The long fault campaign (docs/fault-proof.md): >= 2,000 messages at 50/s, >= 20 seeded faults, about 15 minutes.
## SEED=n replays a run; the figures land in .cache/fault-campaign-<seed>.json.
fault-campaign: install-test
	RELAIS_CAMPAIGN_MESSAGES=$${MESSAGES:-6000} RELAIS_CAMPAIGN_RATE=50 RELAIS_CAMPAIGN_FAULTS=$${FAULTS:-20} \
	RELAIS_CAMPAIGN_SEED=$${SEED:-} RELAIS_CAMPAIGN_TIMEOUT=2400 \
	.venv/bin/python -m pytest -s -p no:cacheprovider tests/e2e/test_fault_campaign.py

## Benchmarks (not tests): print the table recorded in docs/performance.md (about 2.5 minutes).
bench: install-test
	.venv/bin/python benchmarks/run_all.py

## Replay every attack test (pytest marker `attack`) on SQLite and PostgreSQL; prints held / tried.
attack: install-test
	.venv/bin/python -m pytest -m attack -p no:randomly tests

lint:
	.venv/bin/ruff check shared services relais tests
