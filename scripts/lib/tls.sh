# Test certificates, made at test time with openssl (never committed): a CA, a server certificate
# for 127.0.0.1 and localhost (Kafka's SASL_SSL listener, ClickHouse's secure native port) and a
# client certificate (Kafka requires one: mutual TLS). Sourced by kafka.sh and clickhouse.sh.
#   tls_ensure DIR   make DIR/{ca.pem,server.pem,server.key,server-bundle.pem,client.pem,client.key} once
tls_ensure() {
  local dir=$1
  if [ -f "$dir/.complete" ]; then return 0; fi
  command -v openssl >/dev/null || { echo "tls: openssl is required" >&2; return 1; }
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=erpstream test CA" \
      -keyout ca.key -out ca.pem >/dev/null 2>&1
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >server.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key.tmp -out server.csr >/dev/null 2>&1
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out server.pem >/dev/null 2>&1
    openssl pkcs8 -topk8 -nocrypt -in server.key.tmp -out server.key
    cat server.key server.pem >server-bundle.pem # Kafka's PEM keystore: key, then chain
    printf 'extendedKeyUsage=clientAuth\n' >client.ext
    openssl req -newkey rsa:2048 -nodes -subj "/CN=erpstream" -keyout client.key.tmp -out client.csr >/dev/null 2>&1
    openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out client.pem >/dev/null 2>&1
    openssl pkcs8 -topk8 -nocrypt -in client.key.tmp -out client.key
    rm -f ./*.tmp ./*.csr ./*.ext
    chmod 600 ./*.key
  )
  touch "$dir/.complete"
}
