# erpstream: the two commands a new user needs are `make run` and `make test`.
SHELL := /bin/bash
GO ?= go
BIN := bin/erpstream

.PHONY: run test unit integration build vet fmt-check services-up services-down clean help

help:
	@echo "make run     start ClickHouse and the whole pipeline (embedded Kafka unless KAFKA_BROKERS is set)"
	@echo "make test    install/start Apache Kafka and ClickHouse, run unit and integration tests, stop them"
	@echo "make build   build $(BIN)"

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
	$(GO) test -race -count=1 -tags integration -run Integration -v ./...

vet:
	$(GO) vet ./...
	$(GO) vet -tags integration ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

services-up:
	@scripts/clickhouse.sh start
	@ERPSTREAM_STATE_DIR=$(CURDIR)/.run/test scripts/kafka.sh start

services-down:
	@ERPSTREAM_STATE_DIR=$(CURDIR)/.run/test scripts/kafka.sh stop
	@scripts/clickhouse.sh stop

clean:
	rm -rf bin
