#!/usr/bin/env bash
# Installs (Debian package) and runs a project-local ClickHouse server.
#   scripts/clickhouse.sh start   start unless already answering; idempotent
#   scripts/clickhouse.sh stop    stop the server this script started
#   scripts/clickhouse.sh status  exit 0 when the server answers
# Data, config and logs live under $ERPSTREAM_STATE_DIR/clickhouse (default .run/clickhouse).
# With CLICKHOUSE_ADDR set, nothing is installed or started: that server is used as it is.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
state=${ERPSTREAM_STATE_DIR:-$root/.run}/clickhouse
tcp_port=${ERPSTREAM_CLICKHOUSE_PORT:-19000}
# The secure native port (TLS) and a user with a password, as ClickHouse Cloud is reached.
secure_port=${ERPSTREAM_CLICKHOUSE_SECURE_PORT:-19440}
secure_password=${ERPSTREAM_CLICKHOUSE_TEST_PASSWORD:-erpstream-test}
tls_dir=${ERPSTREAM_STATE_DIR:-$root/.run}/tls
http_port=${ERPSTREAM_CLICKHOUSE_HTTP_PORT:-18123}
pidfile=$state/clickhouse.pid
# shellcheck source=lib/daemon.sh
. "$root/scripts/lib/daemon.sh"
# shellcheck source=lib/tls.sh
. "$root/scripts/lib/tls.sh"

log() { echo "clickhouse: $*" >&2; }

answering() {
  # The native port answering is enough: the client tells us the server is up.
  if command -v clickhouse-client >/dev/null 2>&1; then
    clickhouse-client --host 127.0.0.1 --port "$tcp_port" --query 'SELECT 1' >/dev/null 2>&1
  else
    (exec 3<>"/dev/tcp/127.0.0.1/$tcp_port") 2>/dev/null
  fi
}

install_server() {
  command -v clickhouse-server >/dev/null 2>&1 && return 0
  log "installing Debian's clickhouse-server package"
  export DEBIAN_FRONTEND=noninteractive
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq clickhouse-server clickhouse-client >/dev/null
}

write_config() {
  mkdir -p "$state/data" "$state/tmp" "$state/user_files" "$state/log" "$state/format_schemas"
  cat >"$state/config.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$state/log/clickhouse-server.log</log>
    <errorlog>$state/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>3</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$tcp_port</tcp_port>
  <tcp_port_secure>$secure_port</tcp_port_secure>
  <openSSL>
    <server>
      <certificateFile>$tls_dir/server.pem</certificateFile>
      <privateKeyFile>$tls_dir/server.key</privateKeyFile>
      <verificationMode>none</verificationMode>
      <loadDefaultCAFile>false</loadDefaultCAFile>
      <cacheSessions>true</cacheSessions>
      <disableProtocols>sslv2,sslv3</disableProtocols>
      <preferServerCiphers>true</preferServerCiphers>
    </server>
  </openSSL>
  <http_port>$http_port</http_port>
  <max_connections>512</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>64</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>536870912</mark_cache_size>
  <path>$state/data/</path>
  <tmp_path>$state/tmp/</tmp_path>
  <user_files_path>$state/user_files/</user_files_path>
  <format_schema_path>$state/format_schemas/</format_schema_path>
  <users_config>$state/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
  <builtin_dictionaries_reload_interval>3600</builtin_dictionaries_reload_interval>
  <max_session_timeout>3600</max_session_timeout>
  <default_session_timeout>60</default_session_timeout>
</yandex>
XML
  cat >"$state/users.xml" <<XML
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <use_uncompressed_cache>0</use_uncompressed_cache>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
    <erpstream>
      <password_sha256_hex>$(printf '%s' "$secure_password" | sha256sum | cut -d' ' -f1)</password_sha256_hex>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </erpstream>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
XML
}

start() {
  if [ -n "${CLICKHOUSE_ADDR:-}" ]; then
    log "using CLICKHOUSE_ADDR=$CLICKHOUSE_ADDR (not starting a local server)"
    return 0
  fi
  if answering; then
    log "already answering on 127.0.0.1:$tcp_port"
    return 0
  fi
  install_server
  tls_ensure "$tls_dir"
  write_config
  log "starting on 127.0.0.1:$tcp_port (data in $state/data)"
  daemon_launch "$state/log/stdout.log" clickhouse-server --config-file="$state/config.xml"
  daemon_wait_ready 60 "$state/log/clickhouse-server.err.log" "$state/log/stdout.log"
}

case "${1:-}" in
  start) start ;;
  stop) daemon_stop ;;
  status) answering ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
