#!/usr/bin/env bash
# make bench: prints evaluations per second per core for the ERP mapping benchmark
# (../shared/jsonata-suite/bench) on erpstream's JSONata engine, on xiatechs/jsonata-go (the
# comparison peer) and on the reference JavaScript engine (node, npm jsonata 2.2.2), after checking
# that our output is identical to the reference's; then the whole-event mapping benchmarks, ingest
# throughput on Kafka, the overhead of managed calls and the secure proxy, the monitoring query
# latencies on ClickHouse, the whole pipeline, and webhook delivery.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
suite=${JSONATA_SUITE_DIR:-$root/../shared/jsonata-suite}
work=$root/.run/bench
benchtime=${BENCHTIME:-3s}
mkdir -p "$work"

echo "== Go engines (one goroutine = one core; GOMAXPROCS=1)"
JSONATA_BENCH_DIR=$suite/bench GOMAXPROCS=1 go test -run XXX -bench 'ERPMapping' -benchtime "$benchtime" -count 3 \
  ./jsonata | tee "$work/go-bench.txt" | grep -E '^Benchmark'
awk '/^BenchmarkERPMapping/ { name=$1; sub(/-[0-9]+$/, "", name); ns[name]+=$3; n[name]++ }
     END { for (k in ns) printf "  %-42s %9.0f evals/s per core\n", k, 1e9/(ns[k]/n[k]) }' "$work/go-bench.txt" | sort

echo "== compiling mapping-shaped expressions (linear in the source; 64 KB is the mapping maximum)"
GOMAXPROCS=1 go test -run XXX -bench CompileMaximumMapping -benchtime 5x ./jsonata | grep -E '^Benchmark'

echo "== reference JavaScript engine"
if command -v node >/dev/null && command -v npm >/dev/null; then
  ref=$work/jsonata-ref
  if [ ! -d "$ref/node_modules/jsonata" ]; then
    rm -rf "$ref" && cp -r "$suite" "$ref" && chmod -R u+w "$ref"
    (cd "$ref" && npm install --silent >/dev/null 2>&1)
  fi
  mkdir -p "$ref/bench/out"
  JSONATA_BENCH_DIR=$suite/bench JSONATA_BENCH_OUT=$ref/bench/out/go-output.json \
    go test -count=1 -run TestBenchMappingOutput ./jsonata >/dev/null
  (cd "$ref/bench" && RUNS=${RUNS:-3} SECONDS=${SECONDS_PER_RUN:-2} MODES=evalPreparsed,parseAndEval taskset -c 0 node bench.js)
else
  echo "  node/npm not found: skipped"
fi

echo "== whole-event mapping (mapping)"
GOMAXPROCS=1 go test -run XXX -bench . -benchtime "$benchtime" -benchmem ./mapping | grep -E '^Benchmark'

echo "== processor: one event through mapping and the apply stage (one core, no Kafka I/O)"
GOMAXPROCS=1 go test -run XXX -bench ProcessEvent -benchtime "$benchtime" ./processor | grep -E '^Benchmark'
echo "== processor: events of 100 meter readings for one counter holding 5,000 and more (matched against them)"
GOMAXPROCS=1 go test -run XXX -bench MeterReadingsIntoOneMeter -benchtime 20x ./processor | grep -E '^Benchmark'
echo "== processor: events that each mirror one contract's meters (a prune scope over its relations), 5,000 per transaction"
GOMAXPROCS=1 go test -run XXX -bench PruneScopeEvents -benchtime 10000x ./processor | grep -E '^Benchmark'
echo "== processor: events of 5,000 new contacts each, every one looked up by an indexed attribute first"
GOMAXPROCS=1 go test -run XXX -bench FanOutEvent -benchtime 5x ./processor | grep -E '^Benchmark'

echo "== processor entity state: heap per entity (100,000 restored)"
go test -run XXX -bench EntityStateMemory -benchtime 1x ./processor | grep -E '^Benchmark'

echo "== processor entity state: heap by entity count, in memory and on disk (Pebble, bounded cache)"
ERPSTREAM_BENCH_ENTITIES=1000000 go test -run XXX -bench EntityStateHeapByCount -benchtime 1x -timeout 30m ./processor | grep -E '^Benchmark'
ERPSTREAM_BENCH_ENTITIES=10000000 ERPSTREAM_BENCH_STORES=disk go test -run XXX -bench EntityStateHeapByCount -benchtime 1x -timeout 30m ./processor | grep -E '^Benchmark'

echo "== processor deduplication marks: heap and time per mark, in memory and on disk (a day of marks is one per event with a deduplication id)"
ERPSTREAM_BENCH_MARKS=1000000 go test -run XXX -bench DedupMarksByCount -benchtime 1x -timeout 30m ./processor | grep -E '^Benchmark'
ERPSTREAM_BENCH_MARKS=10000000 ERPSTREAM_BENCH_STORES=disk go test -run XXX -bench DedupMarksByCount -benchtime 1x -timeout 30m ./processor | grep -E '^Benchmark'

echo "== ingest throughput on Apache Kafka (1 KB payloads; the load client shares the 2 cores)"
started_kafka=0
if [ -z "${KAFKA_BROKERS:-}" ]; then
  export ERPSTREAM_STATE_DIR=$root/.run/test
  if ! scripts/kafka.sh status; then scripts/kafka.sh start; started_kafka=1; fi
  export KAFKA_BROKERS=127.0.0.1:${ERPSTREAM_KAFKA_PORT:-19092}
fi
go run ./cmd/ingest-bench -duration "${INGEST_SECONDS:-10}s" -clients 8 -streams 2 | tee "$work/ingest-bench.txt"

echo "== calling out: a loopback partner directly, as a managed call and through the secure proxy (one at a time)"
go run ./cmd/callout-bench -n "${CALLOUT_REQUESTS:-2000}"

echo "== monitoring queries on ClickHouse (10M events over 30 days, 20 integrations; seeded once, reused)"
started_ch=0
if [ -z "${CLICKHOUSE_ADDR:-}" ]; then
  if ! ERPSTREAM_STATE_DIR=$root/.run scripts/clickhouse.sh status; then
    ERPSTREAM_STATE_DIR=$root/.run scripts/clickhouse.sh start; started_ch=1
  fi
  export CLICKHOUSE_ADDR=127.0.0.1:${ERPSTREAM_CLICKHOUSE_PORT:-19000}
fi
go run ./cmd/monitoring-bench -rows "${MONITORING_ROWS:-10000000}"

echo "== end to end: NDJSON -> ingest -> processor -> projector -> ClickHouse entities (each stage a process of its own)"
# CPU per event of every process, the broker's and ClickHouse's included: where the time goes.
pids=(-kafka-pid "${ERPSTREAM_STATE_DIR:-$root/.run/test}/kafka/kafka.pid" -clickhouse-pid "$root/.run/clickhouse/clickhouse.pid")
go run ./cmd/e2e-bench -split -processors 1 "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null | tee "$work/e2e-bench.txt"
# The pipeline against ingest alone (NDJSON streams both): how much of what ingest accepts the
# whole pipeline turns into entities.
awk '/NDJSON streams:/ { for (i = 1; i <= NF; i++) if ($i == "events/s") ingest = $(i-1) }
     FNR == NR { next }
     /^ *new / { for (i = 2; i <= NF; i++) if ($i == "events/s)") { v = $(i-1); gsub(/\(/, "", v); newr = v } }
     /^ *update / { for (i = 2; i <= NF; i++) if ($i == "events/s)") { v = $(i-1); gsub(/\(/, "", v); upd = v } }
     END { if (ingest > 0) printf "pipeline/ingest ratio: new %.2f, updates %.2f (ingest alone %.0f events/s)\n", newr / ingest, upd / ingest, ingest }' \
  "$work/ingest-bench.txt" "$work/e2e-bench.txt"
echo "== the same with six orgs and three process instances (each maps the orgs of its partitions; the stages share two cores)"
go run ./cmd/e2e-bench -split -processors 3 -orgs 6 "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null
echo "== the processor alone, 1, 2 and 3 instances mapping a backlog of twelve orgs, one per partition (nothing else running); then one org"
go run ./cmd/e2e-bench -drain 1,2,3 -orgs 12 "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null
go run ./cmd/e2e-bench -drain 1,3 -orgs 1 "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null
echo "== one org with a costlier mapping (a field summing 1…3000), 1 and 3 instances: held by one instance, then spread (ERPSTREAM_ORG_SPREAD), then 3 mapping ahead (ERPSTREAM_ORG_MAP_AHEAD)"
go run ./cmd/e2e-bench -drain 1,3 -orgs 1 -heavy 3000 "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null
go run ./cmd/e2e-bench -drain 1,3 -orgs 1 -heavy 3000 -spread "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null
go run ./cmd/e2e-bench -drain 3 -orgs 1 -heavy 3000 -ahead "${pids[@]}" -events "${E2E_EVENTS:-100000}" 2>/dev/null
echo "== one process instance, one org, a backlog of 1,000,000 new contacts: speed and peak resident memory as its store grows"
go run ./cmd/e2e-bench -drain 1 -orgs 1 "${pids[@]}" -events "${E2E_LARGE_EVENTS:-1000000}" 2>/dev/null

echo "== outbound: contacts created and updated -> webhooks on loopback (one process; deliveries/s, delay p50/p99)"
go run ./cmd/outbound-bench -contacts "${OUTBOUND_CONTACTS:-20000}" -seconds "${OUTBOUND_SECONDS:-20}"
go run ./cmd/outbound-bench -contacts 10000 -seconds "${OUTBOUND_SECONDS:-20}" -rate 1000 | tail -3
if [ "$started_ch" = 1 ]; then ERPSTREAM_STATE_DIR=$root/.run scripts/clickhouse.sh stop; fi
if [ "$started_kafka" = 1 ]; then scripts/kafka.sh stop; fi
