#!/usr/bin/env bash
# make run: ClickHouse (project-local, Debian package) + `erpstream serve` in dev mode, with an
# embedded Kafka broker (kfake, data in .run/kafka-embedded) unless KAFKA_BROKERS is set.
# Ctrl-C stops erpstream and the ClickHouse server this script started.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

export ERPSTREAM_DEV_MODE=${ERPSTREAM_DEV_MODE:-1}
export ERPSTREAM_DEV_TOKEN=${ERPSTREAM_DEV_TOKEN:-dev-token}
export ERPSTREAM_HTTP_ADDR=${ERPSTREAM_HTTP_ADDR:-127.0.0.1:8080}
export ERPSTREAM_METRICS_ADDR=${ERPSTREAM_METRICS_ADDR:-127.0.0.1:9464}
export ERPSTREAM_DATA_DIR=${ERPSTREAM_DATA_DIR:-$root/.run}
# The processor's entity states on disk (Pebble): a restart reads the state topic from its checkpoint.
export ERPSTREAM_PROCESSOR_STATE_DIR=${ERPSTREAM_PROCESSOR_STATE_DIR:-$ERPSTREAM_DATA_DIR/processor-state}
export CLICKHOUSE_DATABASE=${CLICKHOUSE_DATABASE:-erpstream}

started_clickhouse=0
if [ -z "${CLICKHOUSE_ADDR:-}" ]; then
  if ! scripts/clickhouse.sh status; then
    scripts/clickhouse.sh start
    started_clickhouse=1
  fi
  export CLICKHOUSE_ADDR=127.0.0.1:${ERPSTREAM_CLICKHOUSE_PORT:-19000}
fi

server_pid=""
cleanup() {
  trap - INT TERM EXIT
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ "$started_clickhouse" = 1 ]; then scripts/clickhouse.sh stop; fi
}
trap cleanup INT TERM EXIT

bin/erpstream serve &
server_pid=$!

api="http://$ERPSTREAM_HTTP_ADDR"
for _ in $(seq 1 120); do
  if curl -fsS "$api/healthz" >/dev/null 2>&1; then break; fi
  kill -0 "$server_pid" 2>/dev/null || { echo "erpstream exited during start-up" >&2; exit 1; }
  sleep 0.5
done
curl -fsS "$api/healthz" >/dev/null || { echo "erpstream did not become healthy" >&2; exit 1; }

# A demo integration with one inbound use case, so the first event can be sent right away.
auth=(-H "Authorization: Bearer $ERPSTREAM_DEV_TOKEN" -H "Content-Type: application/json")
demo_id=$(curl -fsS "${auth[@]}" "$api/v2/integrations" | python3 -c '
import json, sys
for i in json.load(sys.stdin)["integrations"]:
    if i.get("name") == "Demo ERP":
        print(i["id"]); break' 2>/dev/null || true)
if [ -z "$demo_id" ]; then
  demo_id=$(curl -fsS "${auth[@]}" -X POST "$api/v2/integrations" -d @scripts/demo-integration.json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
fi

cat <<MSG

  erpstream is running
    API          $api          (GET /healthz)
    console      $api/console  (sign in with the dev token)
    metrics      http://$ERPSTREAM_METRICS_ADDR/metrics   (and /healthz; not on the API port)
    dev token    $ERPSTREAM_DEV_TOKEN          (org dev-org, every permission)
    kafka        ${KAFKA_BROKERS:-embedded kfake, data in $ERPSTREAM_DATA_DIR/kafka-embedded}
    clickhouse   $CLICKHOUSE_ADDR, database $CLICKHOUSE_DATABASE
    demo         integration "Demo ERP" $demo_id, inbound use case slug "customer"

  Send a first event:
    curl -s -X POST $api/v3/erp/updates/events -H 'Authorization: Bearer $ERPSTREAM_DEV_TOKEN' \\
      -H 'Content-Type: application/json' \\
      -d '{"integration_id":"$demo_id","correlation_id":"first","events":[{"event_type":"UPDATE","use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\\"customerNumber\\":\\"K-1\\",\\"firstName\\":\\"Lena\\",\\"lastName\\":\\"Meyer\\",\\"email\\":\\"lena@example.com\\"}","deduplication_id":"first-1"}]}'

  Then count it:
    curl -s -X POST $api/v1/monitoring/stats -H 'Authorization: Bearer $ERPSTREAM_DEV_TOKEN' \\
      -d '{"integration_id":"$demo_id"}'

  Ctrl-C stops everything.
MSG
wait "$server_pid"
