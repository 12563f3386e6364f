#!/usr/bin/env bash
# Runs librdkafka's own test suite (the test-runner of the librdkafka that rdkafka-sys bundles)
# against `waterline serve`. See tests/librdkafka/README.md.
#
#   bash tests/librdkafka/run.sh                  # CI mode: the tests in tests.allow, minus `long`
#   bash tests/librdkafka/run.sh --long           # also the `long` ones
#   bash tests/librdkafka/run.sh --tests 0030,0040
#   bash tests/librdkafka/run.sh --all            # survey: every test 0001-0153
#
# Each test number runs in its own test-runner process (`-L -p1`, never `-Q`) against one of
# SHARDS brokers (default 2), each on its own temporary data dir and loopback port. Then the tests
# marked `sasl` in tests.allow run, one at a time, against one more broker that only has a
# SASL_PLAINTEXT listener (SCRAM-SHA-256, an admin user the broker creates at start), and those
# marked `acl` against a PLAINTEXT broker with authorization on and ACLs allowing everyone
# everything (tests add their own DENY ACLs through kafka-path/bin/kafka-acls.sh), and those marked
# `ssl` against a broker with only an SSL listener that requires client certificates (mutual TLS;
# certificates made with openssl into the run's temporary dir, the SSL_* variables of Kafka's
# trivup harness point at them). The last line
# is `N passed, M failed, K skipped`; the exit status is non-zero if any test failed.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; cat <<'EOF'

Options:
  --long           also run the tests marked `long` in tests.allow
  --tests LIST     run just these test numbers (comma or space separated), allow-listed or not
  --sasl-tests LIST  run these against the SASL broker (with --tests, or alone)
  --acl-tests LIST   run these against the authorizing broker (with --tests, or alone)
  --ssl-tests LIST   run these against the mutual-TLS broker (with --tests, or alone)
  --all            run every test 0001-0153 the runner has (survey)
  --shards N       brokers/runners at a time (default 2)
  --logs DIR       where per-test logs and results.tsv go
                   (default target/librdkafka-suite/last-run; old logs there are removed)
Environment:
  WATERLINE_BIN              broker binary (default target/debug/waterline)
  TEST_KAFKA_VERSION         broker version the runner assumes (default 4.0.0)
  LIBRDKAFKA_TEST_TIMEOUT    seconds before one test's runner is killed (default 900)
EOF
}

MODE=ci
TESTS_ARG=""
SASL_ARG=""
ACL_ARG=""
SSL_ARG=""
SHARDS=2
LOGS=""
while [ $# -gt 0 ]; do
  case "$1" in
  --long) MODE=long ;;
  --all) MODE=all ;;
  --tests) TESTS_ARG=${2:?--tests needs a list}; MODE=list; shift ;;
  --tests=*) TESTS_ARG=${1#--tests=}; MODE=list ;;
  --sasl-tests) SASL_ARG=${2:?--sasl-tests needs a list}; MODE=list; shift ;;
  --acl-tests) ACL_ARG=${2:?--acl-tests needs a list}; MODE=list; shift ;;
  --ssl-tests) SSL_ARG=${2:?--ssl-tests needs a list}; MODE=list; shift ;;
  --shards) SHARDS=${2:?}; shift ;;
  --logs) LOGS=${2:?}; shift ;;
  -h | --help) usage; exit 0 ;;
  *) echo "run.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

WATERLINE_BIN=${WATERLINE_BIN:-$ROOT/target/debug/waterline}
# librdkafka gates tests and sub-tests on the broker version. Waterline behaves like Apache
# Kafka 4: no message format v0/v1 (Produce 0-2 are refused), so 4.0.0 selects the right
# variants (e.g. 0092 skips its MsgVersion 1 part, 0052 skips the api.version.request=false part).
KAFKA_VERSION=${TEST_KAFKA_VERSION:-4.0.0}
TEST_TIMEOUT=${LIBRDKAFKA_TEST_TIMEOUT:-900}
LOGS=${LOGS:-$ROOT/target/librdkafka-suite/last-run}

log() { printf '==> librdkafka suite: %s\n' "$*"; }

if [ ! -x "$WATERLINE_BIN" ]; then
  echo "run.sh: no broker binary at $WATERLINE_BIN (cargo build -p waterline-cli, or set WATERLINE_BIN)" >&2
  exit 2
fi

# --- the runner -------------------------------------------------------------------------------
build_start=$(date +%s)
RUNNER_DIR=$(bash "$HERE/build-runner.sh" | tail -1)
RDK_SRC=$(dirname "$RUNNER_DIR")
log "test runner ready in $(($(date +%s) - build_start)) s: $RUNNER_DIR/test-runner"

# --- which tests ------------------------------------------------------------------------------
ALLOW=$HERE/tests.allow
allowed() { # $1 = ci|long: allow-listed test numbers, `long` ones only for long; no sasl/acl/ssl lines
  sed 's/#.*//' "$ALLOW" | awk -v mode="$1" 'NF && $2 != "sasl" && $2 != "acl" && $2 != "ssl" { if ($2 == "long" && mode != "long") next; print $1 }'
}
# Test numbers to run against the broker of a kind (`NNNN sasl`, `NNNN acl`, `NNNN ssl` lines).
tagged() { sed 's/#.*//' "$ALLOW" | awk -v tag="$1" 'NF && $2 == tag { print $1 }'; }
SASL_TESTS=""
ACL_TESTS=""
SSL_TESTS=""
case "$MODE" in
ci | long) TESTS=$(allowed "$MODE"); SASL_TESTS=$(tagged sasl); ACL_TESTS=$(tagged acl)
  SSL_TESTS=$(tagged ssl) ;;
list)
  TESTS=$(echo "$TESTS_ARG" | tr ', ' '\n\n' | sed '/^$/d')
  SASL_TESTS=$(echo "$SASL_ARG" | tr ', ' '\n\n' | sed '/^$/d')
  ACL_TESTS=$(echo "$ACL_ARG" | tr ', ' '\n\n' | sed '/^$/d')
  SSL_TESTS=$(echo "$SSL_ARG" | tr ', ' '\n\n' | sed '/^$/d') ;;
all)
  TESTS=$(ls "$RUNNER_DIR" | sed -n 's/^\(0[01][0-9][0-9]\)-.*\.\(c\|cpp\)$/\1/p' | sort -u |
    awk '$1 >= "0001" && $1 <= "0153"') ;;
esac
for t in $TESTS $SASL_TESTS $ACL_TESTS $SSL_TESTS; do
  if ! [[ $t =~ ^[0-9]{4}$ ]]; then echo "run.sh: bad test number '$t'" >&2; exit 2; fi
done
TESTS=$(echo "$TESTS" | sed '/^$/d' | sort -u)
SASL_TESTS=$(echo "$SASL_TESTS" | sed '/^$/d' | sort -u)
ACL_TESTS=$(echo "$ACL_TESTS" | sed '/^$/d' | sort -u)
SSL_TESTS=$(echo "$SSL_TESTS" | sed '/^$/d' | sort -u)
NTESTS=$(echo "$TESTS" | grep -c . || true)
NSASL=$(echo "$SASL_TESTS" | grep -c . || true)
NACL=$(echo "$ACL_TESTS" | grep -c . || true)
NSSL=$(echo "$SSL_TESTS" | grep -c . || true)
if [ "$NTESTS" = 0 ] && [ "$NSASL" = 0 ] && [ "$NACL" = 0 ] && [ "$NSSL" = 0 ]; then
  echo "run.sh: no tests selected" >&2; exit 2
fi

# --- state, cleanup ---------------------------------------------------------------------------
mkdir -p "$LOGS"
rm -f "$LOGS"/[0-9][0-9][0-9][0-9].log "$LOGS"/[0-9][0-9][0-9][0-9]-*.log "$LOGS"/broker-*.log \
  "$LOGS/results.tsv"
TMP=$(mktemp -d "${TMPDIR:-/tmp}/waterline-rdk.XXXXXX")
# Brokers and test runners are started with setsid (this script's background jobs are not group
# leaders, so setsid execs in place and $! is the new group's id): one kill ends each with its
# children.
WORKER_PIDS=()
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${WORKER_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for f in "$TMP"/runner-*.pid; do
    [ -e "$f" ] && kill -TERM -- "-$(cat "$f")" 2>/dev/null || true
  done
  for pid in $(cat "$TMP"/broker-*.pid 2>/dev/null); do kill -TERM -- "-$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in $(cat "$TMP"/broker-*.pid 2>/dev/null); do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  rm -rf "$TMP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- brokers ----------------------------------------------------------------------------------
# The SASL shard's user: created by the broker at start (`--admin-user`, password from the
# environment), so it is a super user whatever the broker authorises.
SASL_USER=rdktest
SASL_PASSWORD=rdk-test-secret
# The ssl shard's certificates (gen_ssl_certs): one CA signs the broker's certificate and the
# client's; the client's key is encrypted with SSL_PASSWORD, its PKCS#12 keystore too.
SSL_PASSWORD=rdk-ssl-secret
SSL_SUBJECT=/O=waterline-test/CN=rdkafka-client
SSL_PRINCIPAL="User:CN=rdkafka-client,O=waterline-test"

# gen_ssl_certs DIR: a CA, a broker certificate for 127.0.0.1/localhost and a client key and
# certificate in every form 0097 reads through trivup's SSL_* variables (PEM, DER, PKCS#12).
gen_ssl_certs() {
  local d=$1
  mkdir -p "$d"
  (
    cd "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 \
      -subj /CN=waterline-rdk-test-ca
    openssl x509 -in ca.pem -outform DER -out ca.der
    openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj /CN=localhost
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >broker.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile broker.ext -out broker.pem
    openssl req -newkey rsa:2048 -passout "pass:$SSL_PASSWORD" -keyout client.key -out client.csr \
      -subj "$SSL_SUBJECT"
    # An X.509 v3 certificate (extensions): the broker's verifier refuses v1 ones.
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n' >client.ext
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
      -extfile client.ext -out client.pem
    openssl x509 -in client.pem -outform DER -out client.der
    openssl pkey -in client.key -passin "pass:$SSL_PASSWORD" -outform DER -out client.key.der
    # The keystore holds the key, its certificate and the CA (0097 takes the CA from it too).
    openssl pkcs12 -export -inkey client.key -passin "pass:$SSL_PASSWORD" -in client.pem \
      -certfile ca.pem -name client -passout "pass:$SSL_PASSWORD" -out client.p12
  ) >"$d/openssl.log" 2>&1 || { echo "run.sh: openssl failed:" >&2; tail -20 "$d/openssl.log" >&2; return 1; }
}
# The SSL_* variables trivup sets for 0097 (SSL_intermediate_pub_pem unset: root CA only).
ssl_env() {
  local d=$TMP/ssl
  echo SSL_pkcs="$d/client.p12" SSL_pub_der="$d/client.der" SSL_pub_pem="$d/client.pem" \
    SSL_priv_der="$d/client.key.der" SSL_priv_pem="$d/client.key" SSL_ca_der="$d/ca.der" \
    SSL_all_cas_pem="$d/ca.pem" SSL_password="$SSL_PASSWORD" SSL_client_auth=required
}

# start_broker SHARD: a fresh broker on its own data dir and loopback port; writes its test.conf.
# SHARD `sasl` gets one SASL_PLAINTEXT listener instead of a PLAINTEXT one; SHARD `acl` authorizes
# every request (`--authorization true`) and starts with ACLs allowing everyone everything.
start_broker() {
  local s=$1 gen dir blog addr pid listen=(--listen 127.0.0.1:0)
  # The acl broker's SASL listener is only for adding the first ACLs as a super user; the
  # tests use its PLAINTEXT listener, as User:ANONYMOUS.
  [ "$s" = acl ] && listen=(--listener PLAINTEXT://127.0.0.1:0 --listener SASL_PLAINTEXT://127.0.0.1:0
    --admin-user "$SASL_USER" --authorization true)
  # Sessions last 10 s there, so clients re-authenticate (KIP-368) during the longer tests too.
  [ "$s" = sasl ] && listen=(--listener SASL_PLAINTEXT://127.0.0.1:0 --admin-user "$SASL_USER"
    --connections-max-reauth-ms 10000)
  # Mutual TLS turns authorization on: the client certificate's subject is a super user.
  [ "$s" = ssl ] && listen=(--listener SSL://127.0.0.1:0 --tls-cert "$TMP/ssl/broker.pem"
    --tls-key "$TMP/ssl/broker.key" --tls-client-ca "$TMP/ssl/ca.pem" --super-users "$SSL_PRINCIPAL")
  gen=$(($(cat "$TMP/broker-$s.gen" 2>/dev/null || echo 0) + 1))
  echo "$gen" >"$TMP/broker-$s.gen"
  dir=$TMP/broker-$s-data-$gen
  blog=$LOGS/broker-$s.$gen.log
  mkdir -p "$dir"
  # The suite creates many topics with replication factor 3 (written for a 3-broker cluster).
  printf 'accept_any_replication_factor = true\n' >"$dir.toml"
  WATERLINE_ADMIN_PASSWORD=$SASL_PASSWORD setsid "$WATERLINE_BIN" serve --data-dir "$dir" \
    "${listen[@]}" --default-partitions 4 --config "$dir.toml" >"$blog" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$TMP/broker-$s.pid"
  addr=""
  for _ in $(seq 300); do
    addr=$(sed -n 's/^waterline: ready on \([^ ]*\) .*/\1/p' "$blog" | head -1)
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ]; then
    echo "run.sh: broker $s did not start:" >&2
    tail -20 "$blog" >&2
    return 1
  fi
  cat >"$TMP/test-$s.conf" <<EOF
bootstrap.servers=$addr
broker.address.family=v4
test.timeout.multiplier=2
EOF
  if [ "$s" = sasl ]; then
    cat >>"$TMP/test-$s.conf" <<EOF
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-256
sasl.username=$SASL_USER
sasl.password=$SASL_PASSWORD
EOF
  fi
  if [ "$s" = ssl ]; then
    cat >>"$TMP/test-$s.conf" <<EOF
security.protocol=SSL
ssl.ca.location=$TMP/ssl/ca.pem
ssl.certificate.location=$TMP/ssl/client.pem
ssl.key.location=$TMP/ssl/client.key
ssl.key.password=$SSL_PASSWORD
EOF
  fi
  if [ "$s" = acl ]; then
    printf 'security.protocol=SASL_PLAINTEXT\nsasl.mechanism=SCRAM-SHA-256\nsasl.username=%s\nsasl.password=%s\n' \
      "$SASL_USER" "$SASL_PASSWORD" >"$TMP/admin-$s.properties"
    "$WATERLINE_BIN" acls add --command-config "$TMP/admin-$s.properties" \
      --bootstrap-server "$(sed -n 's|^waterline: listener SASL_PLAINTEXT://||p' "$blog" | head -1)" \
      --allow-principal 'User:*' \
      --operation all --topic '*' --group '*' --cluster --transactional-id '*' >>"$blog" 2>&1 ||
      { echo "run.sh: could not add the allow-all ACLs:" >&2; tail -5 "$blog" >&2; return 1; }
  fi
  echo "$addr" >"$TMP/broker-$s.addr"
}

broker_alive() { kill -0 "$(cat "$TMP/broker-$1.pid")" 2>/dev/null; }

# --- one test ---------------------------------------------------------------------------------
# Prints "STATE<TAB>REASON" for test number $1 from its runner log $2 and exit status $3:
# FAILED if any of its entries failed (or the runner died), PASSED if one passed, else SKIPPED.
classify() {
  python3 - "$@" <<'PY'
import re, sys
num, path, rc = sys.argv[1], sys.argv[2], int(sys.argv[3])
text = open(path, errors="replace").read()
text = re.sub(r"\x1b\[[0-9;]*m", "", text)
rows = {}  # entry name -> [state, reason], from the runner's summary table
for m in re.finditer(r"^\|[ \t]*(\d{4}_\S+)[ \t]*\|[ \t]*(\w+)[ \t]*\|[ \t]*([\d.]+)s[ \t]*\|[ \t]*(.*)$", text, re.M):
    if m.group(1).startswith(num + "_"):
        rows[m.group(1)] = [m.group(2), m.group(4).strip()]
# A runner that aborts (e.g. threads left at exit) may print no summary, and a test that timed out
# has no reason in it: take them from the failure banners,
# "### Test "NAME[ (SUBTEST)]" failed at FILE:LINE:FUNC() at DATE: ###" + the message line.
for m in re.finditer(r'^### Test "([^"]+)" failed at (\S+) at .*: ###\n(.*)$', text, re.M):
    name, where, msg = m.group(1).split(" (")[0], m.group(2), m.group(3).strip()
    if not name.startswith(num + "_"):
        continue
    row = rows.setdefault(name, ["FAILED", ""])
    row[0] = "FAILED"
    if not row[1]:
        row[1] = f"{msg} ({where})"
for row in rows.values():
    if row[0] == "SKIPPED" and not row[1]:
        # -L and TESTS leave only one silent skip: the test needs another scenario.
        row[1] = "skipped silently: needs a non-default test scenario (e.g. noautocreate)"
states = [r[0] for r in rows.values()]
failed = "; ".join(f"{n}: {r}" for n, (s, r) in rows.items() if s in ("FAILED", "RUNNING"))
if failed:
    print("FAILED\t" + failed[:300])
elif rc in (124, 137):
    print("FAILED\ttimed out (run.sh killed the runner)")
elif rc != 0:
    print(f"FAILED\trunner exited {rc}" + ("" if rows else " without a summary"))
elif "PASSED" in states:
    print("PASSED\t")
elif rows:
    print("SKIPPED\t" + "; ".join(f"{n}: {r}" for n, (s, r) in rows.items())[:300])
else:
    print("SKIPPED\tno such test in this runner")
PY
}

# run_one SHARD TEST: runs one test number, appends a row to results.tsv. On the SASL shard the
# row and the log are named NNNN-sasl.
run_one() {
  local s=$1 t=$2 tlog start rc end dur res state reason name=$2 extra_env=()
  case "$s" in sasl | acl | ssl) name=$t-$s ;; esac
  # shellcheck disable=SC2207 # paths under $TMP have no spaces
  [ "$s" = ssl ] && extra_env=($(ssl_env))
  tlog=$LOGS/$name.log
  start=$(date +%s.%N)
  set +e
  (
    cd "$TMP/work-$s"
    # CI=true would make the runner add 2 to every timeout multiplier and change concurrency:
    # local runs and CI runs must behave the same.
    # KAFKA_PATH: tests that run Kafka's kafka-acls.sh get ours (kafka-path/bin).
    exec env -u CI "${extra_env[@]}" TESTS="$t" TEST_KAFKA_VERSION="$KAFKA_VERSION" \
      RDKAFKA_TEST_CONF="$TMP/test-$s.conf" KAFKA_PATH="$HERE/kafka-path" WATERLINE_BIN="$WATERLINE_BIN" \
      LD_LIBRARY_PATH="$RDK_SRC/src:$RDK_SRC/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
      setsid timeout -k 15 "$TEST_TIMEOUT" stdbuf -oL -eL "$RUNNER_DIR/test-runner" -L -p1
  ) >"$tlog" 2>&1 &
  echo $! >"$TMP/runner-$s.pid"
  { wait $!; } 2>/dev/null # no "Aborted" job notice: the state and exit status say it
  rc=$?
  set -e
  rm -f "$TMP/runner-$s.pid"
  end=$(date +%s.%N)
  dur=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  res=$(classify "$t" "$tlog" "$rc")
  state=${res%%$'\t'*}
  reason=${res#*$'\t'}
  if ! broker_alive "$s"; then
    state=FAILED
    reason="broker died during the test (see $(basename "$LOGS")/broker-$s.$(cat "$TMP/broker-$s.gen").log); $reason"
  fi
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$state" "$dur" "$s" "$reason" >>"$LOGS/results.tsv"
  printf '  %s %-7s %6ss  (broker %s)%s\n' "$name" "$state" "$dur" "$s" "${reason:+  $reason}"
  if [ "$state" = FAILED ] && ! broker_alive "$s"; then
    tail -30 "$LOGS/broker-$s.$(cat "$TMP/broker-$s.gen").log" | sed 's/^/    broker| /'
    start_broker "$s" || return 1
  fi
}

# A shared queue: each worker takes the next test when it is free.
echo "$TESTS" >"$TMP/queue"
next_test() {
  (
    flock 9
    head -1 "$TMP/queue"
    sed -i 1d "$TMP/queue"
  ) 9>"$TMP/queue.lock"
}
worker() {
  local s=$1 t
  while t=$(next_test) && [ -n "$t" ]; do run_one "$s" "$t"; done
}

log "running $NTESTS test(s) ($MODE mode) on $SHARDS broker(s), then $NSASL on a SASL broker, $NACL on an authorizing one and $NSSL on a mutual-TLS one, broker version $KAFKA_VERSION; logs in $LOGS"
suite_start=$(date +%s)
: >"$LOGS/results.tsv"
# Tests run in $TMP/work-N (they leave stats files behind); some read ../src/ as seen from
# librdkafka's tests/ directory (0053: ../src/statistics_schema.json).
ln -s "$RDK_SRC/src" "$TMP/src"
if [ "$NTESTS" != 0 ]; then
  for s in $(seq "$SHARDS"); do
    mkdir -p "$TMP/work-$s"
    start_broker "$s"
    log "broker $s: $WATERLINE_BIN on $(cat "$TMP/broker-$s.addr")"
  done
  for s in $(seq "$SHARDS"); do
    worker "$s" &
    WORKER_PIDS+=($!)
  done
  for pid in "${WORKER_PIDS[@]}"; do wait "$pid" || true; done
  WORKER_PIDS=()
fi
if [ "$NSASL" != 0 ]; then
  mkdir -p "$TMP/work-sasl"
  start_broker sasl
  log "broker sasl: $WATERLINE_BIN on SASL_PLAINTEXT://$(cat "$TMP/broker-sasl.addr") (SCRAM-SHA-256, user $SASL_USER)"
  for t in $SASL_TESTS; do run_one sasl "$t" || break; done
fi
if [ "$NACL" != 0 ]; then
  mkdir -p "$TMP/work-acl"
  start_broker acl
  log "broker acl: $WATERLINE_BIN on $(cat "$TMP/broker-acl.addr") (authorization on, User:* allowed everything)"
  for t in $ACL_TESTS; do run_one acl "$t" || break; done
fi
if [ "$NSSL" != 0 ]; then
  mkdir -p "$TMP/work-ssl"
  # 0097's untrusted client certificates: librdkafka's own, in ./fixtures/ssl of its tests dir.
  ln -s "$RUNNER_DIR/fixtures" "$TMP/work-ssl/fixtures"
  gen_ssl_certs "$TMP/ssl"
  start_broker ssl
  log "broker ssl: $WATERLINE_BIN on SSL://$(cat "$TMP/broker-ssl.addr") (mutual TLS, super user $SSL_PRINCIPAL)"
  for t in $SSL_TESTS; do run_one ssl "$t" || break; done
fi
wall=$(($(date +%s) - suite_start))

# --- summary ----------------------------------------------------------------------------------
sort -o "$LOGS/results.tsv" "$LOGS/results.tsv"
expected=$( (echo "$TESTS"; echo "$SASL_TESTS" | sed '/^$/d; s/$/-sasl/'
  echo "$ACL_TESTS" | sed '/^$/d; s/$/-acl/'
  echo "$SSL_TESTS" | sed '/^$/d; s/$/-ssl/') | sed '/^$/d' | sort -u)
missing=$(comm -23 <(echo "$expected") <(cut -f1 "$LOGS/results.tsv" | sort -u) || true)
for t in $missing; do
  printf '%s\tFAILED\t0\t-\tnot run (worker stopped)\n' "$t" >>"$LOGS/results.tsv"
done
sort -o "$LOGS/results.tsv" "$LOGS/results.tsv"

failed=$(awk -F'\t' '$2 == "FAILED"' "$LOGS/results.tsv" | cut -f1)
for t in $failed; do
  echo
  echo "---- $t FAILED: last 40 lines of $LOGS/$t.log ----"
  [ -f "$LOGS/$t.log" ] && sed 's/\x1b\[[0-9;]*m//g' "$LOGS/$t.log" | tail -40
done

echo
echo "librdkafka test suite against waterline serve ($MODE mode, wall ${wall}s):"
printf '  %-5s %-7s %8s  %s\n' TEST STATE SECONDS NOTE
awk -F'\t' '{ printf "  %-5s %-7s %8s  %s\n", $1, $2, $3, $5 }' "$LOGS/results.tsv"
passed=$(awk -F'\t' '$2 == "PASSED"' "$LOGS/results.tsv" | wc -l)
nfailed=$(awk -F'\t' '$2 == "FAILED"' "$LOGS/results.tsv" | wc -l)
skipped=$(awk -F'\t' '$2 == "SKIPPED"' "$LOGS/results.tsv" | wc -l)
echo "$passed passed, $nfailed failed, $skipped skipped"
[ "$nfailed" = 0 ]
