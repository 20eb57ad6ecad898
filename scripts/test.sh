#!/usr/bin/env bash
# make test: installs and starts what the tests need (Apache Kafka 4.x fetched with mvn, Debian's
# ClickHouse), runs unit tests and the integration tests against them, then stops what it started.
#   scripts/test.sh        everything
#   scripts/test.sh up     only start the services (for `make unit` / `make integration` by hand)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export ERPSTREAM_STATE_DIR=$root/.run/test
ch_port=${ERPSTREAM_CLICKHOUSE_PORT:-19000}
kafka_port=${ERPSTREAM_KAFKA_PORT:-19092}

started=()
stop_services() {
  for s in "${started[@]}"; do
    case $s in
      kafka) scripts/kafka.sh stop || true ;;
      clickhouse) ERPSTREAM_STATE_DIR=$root/.run scripts/clickhouse.sh stop || true ;;
    esac
  done
}

if [ -z "${CLICKHOUSE_ADDR:-}" ]; then
  if ! ERPSTREAM_STATE_DIR=$root/.run scripts/clickhouse.sh status; then
    ERPSTREAM_STATE_DIR=$root/.run scripts/clickhouse.sh start
    started+=(clickhouse)
  fi
  export CLICKHOUSE_ADDR=127.0.0.1:$ch_port
fi
if [ -z "${KAFKA_BROKERS:-}" ]; then
  if ! scripts/kafka.sh status; then
    scripts/kafka.sh start
    started+=(kafka)
  fi
  export KAFKA_BROKERS=127.0.0.1:$kafka_port
fi
# The secure listeners the scripts start beside the plaintext ones (TLS with client certificates
# and SASL/SCRAM on Kafka; TLS and a password on ClickHouse), for TestIntegrationSecureConnections.
export KAFKA_SECURE_BROKERS=${KAFKA_SECURE_BROKERS:-127.0.0.1:${ERPSTREAM_KAFKA_SECURE_PORT:-19094}}
export KAFKA_TLS_DIR=${KAFKA_TLS_DIR:-$ERPSTREAM_STATE_DIR/tls}
export CLICKHOUSE_SECURE_ADDR=${CLICKHOUSE_SECURE_ADDR:-127.0.0.1:${ERPSTREAM_CLICKHOUSE_SECURE_PORT:-19440}}
export CLICKHOUSE_TLS_DIR=${CLICKHOUSE_TLS_DIR:-$root/.run/tls}
export CLICKHOUSE_TEST_PASSWORD=${CLICKHOUSE_TEST_PASSWORD:-${ERPSTREAM_CLICKHOUSE_TEST_PASSWORD:-erpstream-test}}
if [ "${1:-}" = up ]; then
  echo "services up: KAFKA_BROKERS=$KAFKA_BROKERS CLICKHOUSE_ADDR=$CLICKHOUSE_ADDR"
  echo "secure: KAFKA_SECURE_BROKERS=$KAFKA_SECURE_BROKERS KAFKA_TLS_DIR=$KAFKA_TLS_DIR CLICKHOUSE_SECURE_ADDR=$CLICKHOUSE_SECURE_ADDR CLICKHOUSE_TLS_DIR=$CLICKHOUSE_TLS_DIR"
  exit 0
fi
trap stop_services EXIT

echo "== gofmt / go vet / no build output in git"
make -s fmt-check
make -s tracked-check
go vet ./...
go vet -tags integration ./...

mkdir -p "$root/.run/test"
echo "== JSONata conformance (official suite, error codes matched strictly)"
suite=${JSONATA_SUITE:-$root/../shared/jsonata-suite/test-suite}
if [ -d "$suite" ]; then
  make -s jsonata-conformance JSONATA_SUITE="$suite" | tee "$root/.run/test/conformance.log"
else
  # A clone on its own has no suite beside it: everything else still runs. CI has the suite.
  echo "JSONata suite not found at $suite: conformance SKIPPED (set JSONATA_SUITE to run it)" | tee "$root/.run/test/conformance.log"
fi

echo "== Helm chart (rendered by Helm's engine, every manifest checked against the Kubernetes API types)"
(cd deploy/helm/check && go test -count=1 ./...)

echo "== TypeScript compiler (type-checks the packages generate-types writes)"
ERPSTREAM_TSC=$(scripts/typescript.sh)
export ERPSTREAM_TSC ERPSTREAM_REQUIRE_TSC=1
"$ERPSTREAM_TSC" --version

echo "== Chromium (the console's browser tests drive it headless)"
CHROMIUM=$(scripts/chromium.sh)
export CHROMIUM
"$CHROMIUM" --version
export ERPSTREAM_SCREENSHOTS=${ERPSTREAM_SCREENSHOTS:-$root/.run/test/console-screenshots}

# failure_context prints what a failed test said, wherever it was said: a helper's or a cleanup's
# t.Errorf is reported at a non-test file (apptest.go), which the progress filters do not show, and
# the full log stays on the machine that ran it. Service log lines (slog's "time=") are left out.
failure_context() {
  echo "== what the failed tests reported"
  grep -v -E '^\s+\S+\.go:[0-9]+: time=' "$1" | grep -E -B 25 -- '^\s*--- FAIL|^panic:' | tail -n 200 || true
}

echo "== unit tests (kfake in-process)"
set +e
go test -race -count=1 -v ./... >"$root/.run/test/unit.log" 2>&1
unit_status=$?
set -e
grep -E '^(--- FAIL|FAIL|ok|panic)|^\s+\S+_test\.go:' "$root/.run/test/unit.log" || true
if [ "$unit_status" -ne 0 ]; then
  failure_context "$root/.run/test/unit.log"
  echo "unit tests failed; full log: .run/test/unit.log"
  exit "$unit_status"
fi

echo "== integration tests against Apache Kafka at $KAFKA_BROKERS and ClickHouse at $CLICKHOUSE_ADDR"
# -p 1: the tests share one broker, and the fault tests stop it.
# Not `|| true`: under pipefail that would replace PIPESTATUS with true's and hide a failure.
set +e
go test -race -count=1 -p 1 -timeout 30m -tags integration -run Integration -v ./... 2>&1 | tee "$root/.run/test/integration.log" |
  grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test\.go:)'
status=${PIPESTATUS[0]}
set -e
if [ "$status" -ne 0 ]; then
  failure_context "$root/.run/test/integration.log"
  echo "integration tests failed; full log: .run/test/integration.log"
  exit "$status"
fi
passed=$(grep -c -- '^--- PASS: TestIntegration' "$root/.run/test/integration.log" || true)
if [ "$passed" -eq 0 ]; then
  echo "no integration test ran: refusing to report success"
  exit 1
fi
count() { grep -c -E "^\s*--- $1: " "$2" || true; }
unit_passed=$(count PASS "$root/.run/test/unit.log")
unit_failed=$(count FAIL "$root/.run/test/unit.log")
int_failed=$(count FAIL "$root/.run/test/integration.log")
stop_services
trap - EXIT
grep -E 'cases \(|SKIPPED' "$root/.run/test/conformance.log" || true
echo "unit: $unit_passed passed, $unit_failed failed; integration (Apache Kafka + ClickHouse): $passed passed, $int_failed failed"
echo "$((unit_passed + passed)) passed, $((unit_failed + int_failed)) failed"
if [ "$((unit_failed + int_failed))" -ne 0 ]; then
  exit 1 # belt and braces: a failure counted in a log never reports success
fi
