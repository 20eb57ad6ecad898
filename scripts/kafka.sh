#!/usr/bin/env bash
# Fetches Apache Kafka (org.apache.kafka:kafka_2.13) from Maven Central with mvn and runs a
# single-node KRaft broker on loopback with the machine's Java 17.
#   scripts/kafka.sh fetch   download the jars into the cache (outside git)
#   scripts/kafka.sh start   format (first time) and start the broker; idempotent
#   scripts/kafka.sh stop    stop the broker this script started
#   scripts/kafka.sh status  exit 0 when the broker port answers
# Jars: ${XDG_CACHE_HOME:-~/.cache}/erpstream/kafka-$KAFKA_VERSION; data and logs: $ERPSTREAM_STATE_DIR/kafka.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${KAFKA_VERSION:-4.1.1}
log4j_version=2.24.3
cache=${XDG_CACHE_HOME:-$HOME/.cache}/erpstream/kafka-$version
state=${ERPSTREAM_STATE_DIR:-$root/.run}/kafka
port=${ERPSTREAM_KAFKA_PORT:-19092}
controller_port=${ERPSTREAM_KAFKA_CONTROLLER_PORT:-19093}
# The second listener: TLS with client certificates and SASL (SCRAM-SHA-256/512, PLAIN), as managed
# Kafka services expose it. SCRAM users are created by the tests through the admin API.
secure_port=${ERPSTREAM_KAFKA_SECURE_PORT:-19094}
tls_dir=${ERPSTREAM_STATE_DIR:-$root/.run}/tls
pidfile=$state/kafka.pid
# shellcheck source=lib/daemon.sh
. "$root/scripts/lib/daemon.sh"
# shellcheck source=lib/tls.sh
. "$root/scripts/lib/tls.sh"

log() { echo "kafka: $*" >&2; }

answering() { (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; }

fetch() {
  if [ -f "$cache/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { log "mvn is required to fetch Kafka"; return 1; }
  log "fetching org.apache.kafka:kafka_2.13:$version with mvn into $cache"
  mkdir -p "$cache"
  cat >"$cache/pom.xml" <<XML
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>erpstream</groupId><artifactId>kafka-fetch</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$version</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$log4j_version</version></dependency>
  </dependencies>
</project>
XML
  rm -rf "$cache/libs"
  mvn -q -B -f "$cache/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
    -DoutputDirectory="$cache/libs" >"$cache/mvn.log" 2>&1 || { tail -n 40 "$cache/mvn.log" >&2; return 1; }
  touch "$cache/.complete"
}

write_config() {
  mkdir -p "$state/data" "$state/log"
  cat >"$state/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port,SASL_SSL://127.0.0.1:$secure_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port,SASL_SSL://127.0.0.1:$secure_port
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_erpstream-plain="plain-secret";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$tls_dir/server-bundle.pem
listener.name.sasl_ssl.ssl.truststore.type=PEM
listener.name.sasl_ssl.ssl.truststore.location=$tls_dir/ca.pem
listener.name.sasl_ssl.ssl.client.auth=required
log.dirs=$state/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=10
group.initial.rebalance.delay.ms=0
log.cleaner.backoff.ms=1000
PROPS
  cat >"$state/log4j2.properties" <<PROPS
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = $state/log/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
logger.state.name = state.change.logger
logger.state.level = warn
PROPS
}

java_cmd=(java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$state/log4j2.properties" -cp "$cache/libs/*")

start() {
  if answering; then log "already answering on 127.0.0.1:$port"; return 0; fi
  fetch
  tls_ensure "$tls_dir"
  write_config
  if [ ! -f "$state/data/meta.properties" ]; then
    log "formatting KRaft storage in $state/data"
    "${java_cmd[@]}" kafka.tools.StorageTool format -t "$("${java_cmd[@]}" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)" \
      -c "$state/server.properties" >"$state/log/format.log" 2>&1 || { cat "$state/log/format.log" >&2; return 1; }
  fi
  log "starting Apache Kafka $version on 127.0.0.1:$port"
  daemon_launch "$state/log/stdout.log" "${java_cmd[@]}" kafka.Kafka "$state/server.properties"
  daemon_wait_ready 60 "$state/log/server.log" "$state/log/stdout.log"
}

case "${1:-}" in
  fetch) fetch ;;
  start) start ;;
  stop) daemon_stop ;;
  status) answering ;;
  *) echo "usage: $0 fetch|start|stop|status" >&2; exit 2 ;;
esac
