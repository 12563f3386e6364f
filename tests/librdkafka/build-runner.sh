#!/usr/bin/env bash
# Builds librdkafka's own test runner (tests/test-runner) from the librdkafka source that the
# rdkafka-sys crate in Cargo.lock ships, in a copy under target/librdkafka-suite/. Idempotent: does
# nothing when the runner for this librdkafka version and these configure flags is already built.
# Prints the runner's directory (…/src/tests) as its last line on stdout; progress goes to stderr.
#
# Nothing here is committed: the copy, the objects and the runner all live under target/.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

say() { printf 'librdkafka-suite: %s\n' "$*" >&2; }

# librdkafka features the suite needs against `waterline serve`. lz4 is the bundled copy; zstd
# comes from libzstd-dev so 0017 exercises every codec the broker stores; OpenSSL (libssl-dev)
# gives SSL and SASL/SCRAM, for the tests run.sh runs against a SASL broker (`sasl` in
# tests.allow) and the runner's local SSL tests.
CONFIGURE_FLAGS=(--enable-ssl --disable-gssapi --disable-curl --disable-lz4-ext --enable-zstd
  --enable-zlib --no-download)

# --- which librdkafka: the one rdkafka-sys in Cargo.lock bundles --------------------------------
SYS_VERSION=$(awk '/^name = "rdkafka-sys"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ -z "$SYS_VERSION" ]; then
  say "rdkafka-sys is not in Cargo.lock"; exit 1
fi
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
find_src() { ls -d "$CARGO_HOME"/registry/src/*/"rdkafka-sys-$SYS_VERSION"/librdkafka 2>/dev/null | head -1; }
SRC=$(find_src || true)
if [ -z "$SRC" ]; then
  say "rdkafka-sys $SYS_VERSION not in the cargo registry yet: cargo fetch --locked"
  cargo fetch --locked >&2
  SRC=$(find_src || true)
fi
if [ -z "$SRC" ] || [ ! -f "$SRC/tests/test.c" ]; then
  say "no librdkafka source with tests/ for rdkafka-sys $SYS_VERSION under $CARGO_HOME/registry/src"
  exit 1
fi

OUT=$ROOT/target/librdkafka-suite
WORK=$OUT/src
STAMP=$OUT/built.stamp
WANT="rdkafka-sys=$SYS_VERSION flags=${CONFIGURE_FLAGS[*]} +rapidjson"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$WORK/tests/test-runner" ]; then
  say "test runner already built ($WANT)"
  echo "$WORK/tests"
  exit 0
fi

# --- Debian packages the build needs ----------------------------------------------------------
need=()
command -v make >/dev/null 2>&1 || need+=(make)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v perl >/dev/null 2>&1 || need+=(perl)
command -v python3 >/dev/null 2>&1 || need+=(python3)
[ -e /usr/include/zlib.h ] || need+=(zlib1g-dev)
[ -e /usr/include/zstd.h ] || need+=(libzstd-dev)
[ -e /usr/include/openssl/ssl.h ] || need+=(libssl-dev)
# The C++ tests check statistics JSON with RapidJSON (0053, 0098, 0101, 0110, ... skip without it).
[ -e /usr/include/rapidjson/schema.h ] || need+=(rapidjson-dev)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  say "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >&2
fi

# --- copy, configure, build -------------------------------------------------------------------
start=$(date +%s)
say "building the test runner of librdkafka (rdkafka-sys $SYS_VERSION) in $WORK"
rm -rf "$WORK" "$STAMP"
mkdir -p "$OUT"
cp -a "$SRC" "$WORK"
chmod -R u+w "$WORK"
JOBS=${LIBRDKAFKA_SUITE_JOBS:-2}
(
  cd "$WORK"
  ./configure "${CONFIGURE_FLAGS[@]}" >"$OUT/configure.log" 2>&1 ||
    { tail -30 "$OUT/configure.log" >&2; exit 1; }
  make -j"$JOBS" libs >"$OUT/make-libs.log" 2>&1 || { tail -40 "$OUT/make-libs.log" >&2; exit 1; }
  make -C tests -j"$JOBS" build >"$OUT/make-tests.log" 2>&1 ||
    { tail -40 "$OUT/make-tests.log" >&2; exit 1; }
)
[ -x "$WORK/tests/test-runner" ] || { say "tests/test-runner was not built"; exit 1; }
echo "$WANT" >"$STAMP"
say "test runner built in $(($(date +%s) - start)) s"
echo "$WORK/tests"
