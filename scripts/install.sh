#!/usr/bin/env bash
# Install Relais into a local virtual environment.
#
#   scripts/install.sh           runtime install: .venv + pip install -e .
#   scripts/install.sh --test    also the test extras and the real parts the tests start:
#                                Apache Kafka 4 jars (Maven, pinned in tests/infra/kafka/pom.xml,
#                                copied to .cache/kafka-VERSION/), HAPI HL7 v2 jars (tests/infra/hl7/pom.xml,
#                                .cache/hapi-VERSION/), GreenMail, PostgreSQL, Java 17 and Maven when missing,
#                                Chromium, and the Node peers of tests/infra/oidc (npm ci).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

WITH_TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) WITH_TEST=1 ;;
    -h|--help)
      sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
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

# --- Java 17+ and Maven (Apache Kafka 4 runs on Java 17; Maven fetches its jars) -------------
java_major() { java -version 2>&1 | sed -n '1s/.*version "\([0-9]*\).*/\1/p'; }
if command -v java >/dev/null 2>&1 && [ "$(java_major)" -ge 17 ] 2>/dev/null; then
  say "Java found: $(java -version 2>&1 | head -n 1)"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install default-jre-headless
else
  echo "install.sh: Java 17 or later not found; the Apache Kafka 4 tests need it." >&2
  echo "            Install a JRE (e.g. 'sudo apt-get install -y default-jre-headless')." >&2
fi
# javac compiles the HL7 v2 tests' HAPI sender (tests/infra/hl7/HapiSender.java): a JDK, not only a JRE.
if command -v javac >/dev/null 2>&1; then
  say "javac found: $(javac -version 2>&1 | head -n 1)"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install default-jdk-headless
else
  echo "install.sh: javac not found; the HL7 v2 tests compile their HAPI sender with it (a JDK 17+)." >&2
fi
if command -v mvn >/dev/null 2>&1; then
  say "Maven found: $(mvn -v 2>/dev/null | head -n 1)"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install maven
else
  echo "install.sh: mvn not found; it fetches the Apache Kafka 4 jars the tests run." >&2
fi

# --- Apache Kafka 4 (its published jars, pinned in tests/infra/kafka/pom.xml) ---------------
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' tests/infra/kafka/pom.xml)"
KAFKA_HOME_DIR="$ROOT/.cache/kafka-$KAFKA_VERSION"
if [ -f "$KAFKA_HOME_DIR/fetched" ]; then
  say "Apache Kafka $KAFKA_VERSION already in $KAFKA_HOME_DIR/libs"
elif command -v mvn >/dev/null 2>&1; then
  say "fetching Apache Kafka $KAFKA_VERSION with Maven into $KAFKA_HOME_DIR/libs"
  mvn -B -q -f tests/infra/kafka/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$KAFKA_HOME_DIR/libs" -DincludeScope=runtime
  echo "$KAFKA_VERSION" > "$KAFKA_HOME_DIR/fetched"
  say "Apache Kafka $KAFKA_VERSION: $(ls "$KAFKA_HOME_DIR/libs" | wc -l) jars"
fi

# --- GreenMail (the MSSanté operator's SMTP/IMAP in the mail tests; pinned in tests/infra/greenmail/pom.xml) ---
GREENMAIL_VERSION="$(sed -n 's:.*<greenmail.version>\(.*\)</greenmail.version>.*:\1:p' tests/infra/greenmail/pom.xml)"
GREENMAIL_HOME_DIR="$ROOT/.cache/greenmail-$GREENMAIL_VERSION"
if [ -f "$GREENMAIL_HOME_DIR/greenmail-standalone-$GREENMAIL_VERSION.jar" ]; then
  say "GreenMail $GREENMAIL_VERSION already in $GREENMAIL_HOME_DIR"
elif command -v mvn >/dev/null 2>&1; then
  say "fetching GreenMail $GREENMAIL_VERSION with Maven into $GREENMAIL_HOME_DIR"
  mvn -B -q -f tests/infra/greenmail/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$GREENMAIL_HOME_DIR" -DincludeScope=runtime
fi

# --- HAPI HL7 v2 (the hospital's MLLP sender of the HL7 v2 tests, pinned in tests/infra/hl7/pom.xml) ----------
HAPI_VERSION="$(sed -n 's:.*<hapi.version>\(.*\)</hapi.version>.*:\1:p' tests/infra/hl7/pom.xml)"
HAPI_HOME_DIR="$ROOT/.cache/hapi-$HAPI_VERSION"
if [ -f "$HAPI_HOME_DIR/fetched" ]; then
  say "HAPI HL7 v2 $HAPI_VERSION already in $HAPI_HOME_DIR/libs"
elif command -v mvn >/dev/null 2>&1; then
  say "fetching HAPI HL7 v2 $HAPI_VERSION with Maven into $HAPI_HOME_DIR/libs"
  mvn -B -q -f tests/infra/hl7/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$HAPI_HOME_DIR/libs" -DincludeScope=runtime
  echo "$HAPI_VERSION" > "$HAPI_HOME_DIR/fetched"
  say "HAPI HL7 v2 $HAPI_VERSION: $(ls "$HAPI_HOME_DIR/libs" | wc -l) jars (the tests compile their sender with javac)"
fi

# --- Chromium (the CPTS dashboard page is tested in headless Chromium driven by Playwright) ----
if [ -x /usr/bin/chromium ]; then
  say "Chromium found: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install chromium
else
  echo "install.sh: /usr/bin/chromium not found; the dashboard page test needs Debian's chromium." >&2
fi

# --- Node peers of the tests: oidc-provider (the OpenID provider) and axe-core, pinned by their lock file ----
if command -v npm >/dev/null 2>&1; then
  say "installing the tests' Node peers (tests/infra/oidc: oidc-provider, axe-core)"
  npm ci --prefix tests/infra/oidc --no-audit --no-fund
elif is_root && command -v apt-get >/dev/null 2>&1; then
  apt_install nodejs npm
  npm ci --prefix tests/infra/oidc --no-audit --no-fund
else
  echo "install.sh: npm not found; the sign-in tests start oidc-provider (Node) and inject axe-core." >&2
fi

say "done; run the tests with: $VENV/bin/pytest"
