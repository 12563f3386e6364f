#!/usr/bin/env bash
# Runs every Waterline test on a fresh Debian machine with the Rust toolchain.
# Installs what the tests need first (idempotent; skips what is already there):
#   - Debian packages: kcat (real-client tests), PostgreSQL server binaries (the store and
#     exactly-once tests start their own throwaway clusters), build tools for librdkafka
#   - Debian chromium + chromium-driver (the dashboard test in tests/clients/test_observability.py)
#   - a Python venv in .venv with confluent-kafka, kafka-python (+ codecs), pytest and pytest-timeout, selenium
#   - a second venv, .venv-quix, with the Quix Streams stream processor (it pins confluent-kafka)
# Then: format and lint checks, every Rust test (unit, integration, crash, real-client with the
# rdkafka crate), and the Python/kcat real-client suites against `waterline serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

log() { printf '\n==> %s\n' "$*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi

need_pkgs=()
command -v kcat >/dev/null 2>&1 || need_pkgs+=(kcat)
command -v make >/dev/null 2>&1 || need_pkgs+=(make)
command -v gcc >/dev/null 2>&1 || need_pkgs+=(gcc)
command -v g++ >/dev/null 2>&1 || need_pkgs+=(g++)
command -v perl >/dev/null 2>&1 || need_pkgs+=(perl)
# The dashboard test drives Debian's Chromium through chromedriver (selenium).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
[ -e /usr/include/zlib.h ] || need_pkgs+=(zlib1g-dev)
# waterline-consumer builds librdkafka with OpenSSL (TLS, SASL SCRAM).
[ -e /usr/include/openssl/ssl.h ] || need_pkgs+=(libssl-dev)
# The PostgreSQL store and exactly-once tests start throwaway clusters with initdb/pg_ctl.
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need_pkgs+=(postgresql)
fi
if [ ${#need_pkgs[@]} -gt 0 ]; then
  log "installing Debian packages: ${need_pkgs[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi

VENV=$ROOT/.venv
if [ ! -x "$VENV/bin/pytest" ] || ! "$VENV/bin/python" -c 'import confluent_kafka, kafka, lz4, snappy, zstandard, pytest_timeout, selenium' 2>/dev/null; then
  log "creating Python venv with real Kafka clients in $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r tests/clients/requirements.txt
fi

# A real stream processor (Quix Streams) in its own venv: it pins an older confluent-kafka.
QUIX_VENV=$ROOT/.venv-quix
if [ ! -x "$QUIX_VENV/bin/python" ] || ! "$QUIX_VENV/bin/python" -c 'import quixstreams' 2>/dev/null; then
  log "creating the Quix Streams venv in $QUIX_VENV"
  python3 -m venv "$QUIX_VENV"
  "$QUIX_VENV/bin/pip" install -q --upgrade pip
  "$QUIX_VENV/bin/pip" install -q -r tests/clients/requirements-quix.txt
fi

log "checking formatting"
cargo fmt --all -- --check

log "building"
cargo build --workspace --all-targets --locked

log "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

log "Rust tests (unit, integration, crash, rdkafka real-client)"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --doc --locked
else
  cargo test --workspace --locked --no-fail-fast
fi

log "real-client tests: confluent-kafka, kafka-python, kcat against waterline serve"
# A hung test fails after 5 minutes instead of running into CI's limit.
WATERLINE_BIN=$ROOT/target/debug/waterline QUIX_PYTHON=$QUIX_VENV/bin/python \
  "$VENV/bin/pytest" -q --timeout=300 tests/clients

log "librdkafka's own test suite against waterline serve (tests/librdkafka, allow-listed tests)"
# Builds librdkafka's test runner under target/ on first use (~3.5 min), then ~10 min on 2 cores.
WATERLINE_BIN=$ROOT/target/debug/waterline bash tests/librdkafka/run.sh
