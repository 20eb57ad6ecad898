// Command e2e-bench measures the whole pipeline on real services: N events of new contacts sent
// as one NDJSON stream go through ingest, the processor and the projector until ClickHouse holds N
// entities; then N updates of those contacts, until every one shows its new value. It prints the
// seconds and events/s of each round. It runs every service in this process, on Apache Kafka
// (KAFKA_BROKERS) and ClickHouse (CLICKHOUSE_ADDR), in topics and a database of its own.
//
//	KAFKA_BROKERS=127.0.0.1:19092 CLICKHOUSE_ADDR=127.0.0.1:19000 go run ./cmd/e2e-bench -events 100000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"time"

	"github.com/erpstream/erpstream/cmd/internal/benchenv"
)

func main() {
	events := flag.Int("events", 100_000, "events per round")
	flag.Parse()
	env := benchenv.Start("e2e", nil)
	defer env.Stop()
	conn, post, ctx := env.Conn, env.Post, context.Background()
	var integ struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(post("/v2/integrations", "application/json", []byte(`{"name":"e2e","use_cases":[{"name":"Customers",
		"slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
		"unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"customerNumber"},
		{"attribute":"first_name","field":"firstName"},{"attribute":"last_name","field":"lastName"},
		{"attribute":"email","field":"email","_type":"email"},{"attribute":"round","field":"round"}]}]}}]}`)), &integ)

	for _, round := range []string{"new", "update"} {
		var body bytes.Buffer
		for i := 0; i < *events; i++ {
			p := fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"F%d","lastName":"L","email":"k%d@example.com","round":"%s"}`, i, i, i, round)
			q, _ := json.Marshal(p)
			fmt.Fprintf(&body, `{"use_case_slug":"customer","timestamp":"2026-01-01T10:00:00Z","payload":%s}`+"\n", q)
		}
		start := time.Now()
		post("/v3/erp/updates/events/ndjson?integration_id="+integ.ID, "application/x-ndjson", body.Bytes())
		for {
			var n uint64
			if err := conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'
				AND visitParamExtractString(attributes, 'round') = ?`, round).Scan(&n); err != nil {
				panic(err)
			}
			if n == uint64(*events) {
				break
			}
			if time.Since(start) > 10*time.Minute {
				panic(fmt.Sprintf("round %s: %d of %d entities after 10 minutes", round, n, *events))
			}
			time.Sleep(200 * time.Millisecond)
		}
		s := time.Since(start).Seconds()
		fmt.Printf("  %-7s %7d events NDJSON → ClickHouse entities: %5.1f s (%6.0f events/s)\n", round, *events, s, float64(*events)/s)
	}
}
