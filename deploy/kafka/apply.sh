#!/bin/sh
# Create the Relais topics and ACLs on a Kafka cluster (idempotent; see docs/operations.md).
#   deploy/kafka/apply.sh --dry-run
#   deploy/kafka/apply.sh --bootstrap-server kafka:9092 --command-config admin.properties [--kafka-bin /opt/kafka/bin]
# The YAML is read by render.py (Python 3 with PyYAML); set PYTHON to pick the interpreter.
set -eu
here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
exec "${PYTHON:-python3}" "$here/render.py" "$@"
