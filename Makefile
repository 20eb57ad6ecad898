# erpstream: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/erpstream

JSONATA_SUITE ?= $(CURDIR)/../shared/jsonata-suite/test-suite

.PHONY: run test unit integration build vet fmt-check tracked-check services-up services-down clean help jsonata-conformance bench

help:
	@echo "make run     start ClickHouse and the whole pipeline (embedded Kafka unless KAFKA_BROKERS is set)"
	@echo "make test    install/start Apache Kafka and ClickHouse, run unit and integration tests, stop them"
	@echo "make build   build $(BIN)"
	@echo "make bench   JSONata engine vs jsonata-go vs the reference JS engine, and mapping throughput"
	@echo "make jsonata-conformance   the official JSONata suite against our engine (part of make test)"

build:
	$(GO) build -o $(BIN) ./cmd/erpstream

run: build
	@scripts/run.sh

test:
	@scripts/test.sh

# Pieces of `make test`, for a developer with the services already up (scripts/test.sh up).
unit:
	$(GO) test -race -count=1 ./...

integration:
	$(GO) test -race -count=1 -p 1 -tags integration -run Integration -v ./...

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Build output and data dumps stay out of git: no tracked file is an executable or over 1 MiB.
tracked-check:
	@bad=$$(git ls-files -z | xargs -0 -r sh -c 'for f; do [ -f "$$f" ] || continue; \
	  if [ $$(wc -c < "$$f") -gt 1048576 ] || head -c 4 "$$f" | grep -q "ELF"; then echo "$$f"; fi; done' sh); \
	if [ -n "$$bad" ]; then echo "tracked files that must not be in git (build output, data):"; echo "$$bad"; exit 1; fi

services-up:
	@scripts/clickhouse.sh start
	@ERPSTREAM_STATE_DIR=$(CURDIR)/.run/test scripts/kafka.sh start

services-down:
	@ERPSTREAM_STATE_DIR=$(CURDIR)/.run/test scripts/kafka.sh stop
	@scripts/clickhouse.sh stop

clean:
	rm -rf bin

# The official JSONata test suite; fails when fewer cases pass than jsonata/conformance-floor.txt.
jsonata-conformance:
	@test -d "$(JSONATA_SUITE)" || { echo "JSONata suite not found at $(JSONATA_SUITE) (set JSONATA_SUITE)"; exit 1; }
	@$(GO) run ./cmd/jsonata-conformance -suite "$(JSONATA_SUITE)" -floor $$(cat jsonata/conformance-floor.txt) -failures .run/jsonata-failures.txt

bench:
	@scripts/bench.sh
