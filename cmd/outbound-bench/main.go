// Command outbound-bench measures webhook delivery on real services: every service runs in this
// process on Apache Kafka (KAFKA_BROKERS) and ClickHouse (CLICKHOUSE_ADDR), with a webhook receiver
// on loopback. Round 1 creates N contacts at once (contact.created) and prints deliveries per
// second. Round 2 updates contacts (contact.updated, which reads the entity from ClickHouse) at half
// that rate for a while and prints the delay from the entity's row appearing in ClickHouse (polled
// every 50 ms) to its webhook request, and from the event's acceptance to the request, as p50/p99.
//
//	KAFKA_BROKERS=127.0.0.1:19092 CLICKHOUSE_ADDR=127.0.0.1:19000 go run ./cmd/outbound-bench -contacts 20000
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/erpstream/erpstream/cmd/internal/benchenv"

	"github.com/erpstream/erpstream/app"
)

// receiver records when each entity's delivery arrived and the event's receive time it carries.
type receiver struct {
	mu       sync.Mutex
	at       map[string]time.Time
	accepted map[string]time.Time
	first    time.Time
	last     time.Time
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body struct {
		ID      string  `json:"id"`
		Version float64 `json:"_event_version"`
	}
	_ = json.NewDecoder(req.Body).Decode(&body)
	now := time.Now()
	key := body.ID + "@" + strconv.FormatInt(int64(body.Version), 10)
	r.mu.Lock()
	if _, seen := r.at[key]; !seen {
		r.at[key] = now
		r.accepted[key] = time.UnixMicro(int64(body.Version))
	}
	if r.first.IsZero() {
		r.first = now
	}
	r.last = now
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.at)
}

func main() {
	contacts := flag.Int("contacts", 20_000, "contacts created in the throughput round")
	seconds := flag.Int("seconds", 20, "duration of the latency round")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the throughput round to this file")
	fixedRate := flag.Int("rate", 0, "updates per second in the latency round (0: half the measured throughput)")
	flag.Parse()
	rcv := &receiver{at: map[string]time.Time{}, accepted: map[string]time.Time{}}
	hookLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = http.Serve(hookLn, rcv) }()

	env := benchenv.Start("outbound", func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
		c.Outbound, c.OrgOutboundConcurrency = app.OutboundConfig{DestinationConcurrency: 16}, -1
	})
	defer env.Stop()
	conn, post, ctx := env.Conn, env.Post, context.Background()
	var integ struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(post("/v2/integrations", "application/json", []byte(`{"name":"bench","use_cases":[{"name":"Customers",
		"slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
		"unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"customerNumber"},
		{"attribute":"first_name","field":"firstName"}]}]}},
		{"name":"Out","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contact.created","ack_tracking":"off","mappings":[
		{"id":"00000001-0000-4000-8000-000000000001","name":"ERP","enabled":true,
		 "jsonata_expression":"{\"id\": entity._id, \"number\": entity.customer_number, \"name\": entity.first_name}",
		 "delivery":{"type":"webhook","webhook_id":"erp","webhook_url":"http://`+hookLn.Addr().String()+`/hook"}}]}},
		{"name":"Changed","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contact.updated","ack_tracking":"off","mappings":[
		{"id":"00000001-0000-4000-8000-000000000001","name":"ERP","enabled":true,
		 "jsonata_expression":"{\"id\": entity._id, \"number\": entity.customer_number, \"name\": entity.first_name}",
		 "delivery":{"type":"webhook","webhook_id":"erp","webhook_url":"http://`+hookLn.Addr().String()+`/hook"}}]}}]}`)), &integ)
	send := func(from, n int, round string) {
		var body bytes.Buffer
		for i := from; i < from+n; i++ {
			p, _ := json.Marshal(fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"%s%d"}`, i, round, i))
			fmt.Fprintf(&body, `{"use_case_slug":"customer","timestamp":"2026-01-01T10:00:00Z","payload":%s}`+"\n", p)
		}
		post("/v3/erp/updates/events/ndjson?integration_id="+integ.ID, "application/x-ndjson", body.Bytes())
	}
	wait := func(want int) {
		for start := time.Now(); rcv.count() < want; time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 10*time.Minute {
				panic(fmt.Sprintf("%d of %d deliveries after 10 minutes", rcv.count(), want))
			}
		}
	}

	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		_ = pprof.StartCPUProfile(f)
	}
	started := time.Now()
	if dump := os.Getenv("OUTBOUND_BENCH_GOROUTINES"); dump != "" {
		time.AfterFunc(8*time.Second, func() {
			f, _ := os.Create(dump)
			_ = pprof.Lookup("goroutine").WriteTo(f, 1)
			f.Close()
		})
	}
	send(0, *contacts, "F")
	stored := make(chan time.Duration, 1)
	go func() {
		for {
			var n uint64
			if err := conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'`).Scan(&n); err == nil && n >= uint64(*contacts) {
				stored <- time.Since(started)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	wait(*contacts)
	delivered := time.Since(started)
	pprof.StopCPUProfile()
	rcv.mu.Lock()
	span := rcv.last.Sub(rcv.first).Seconds()
	rcv.mu.Unlock()
	rate := float64(*contacts) / delivered.Seconds()
	fmt.Printf("  throughput: %d contacts created, each delivered to a loopback webhook: %.0f deliveries/s end to end (%.1f s from the\n",
		*contacts, rate, delivered.Seconds())
	fmt.Printf("    NDJSON request to the last delivery; all entities were in ClickHouse after %.1f s); first to last delivery %.1f s: %.0f/s\n",
		(<-stored).Seconds(), span, float64(*contacts)/span)

	// Round 2: half the rate, in batches every 100 ms; ClickHouse is polled for the rows' arrival.
	half := max(10, int(rate/2))
	if *fixedRate > 0 {
		half = *fixedRate
	}
	perTick := max(1, half/10)
	total := perTick * 10 * *seconds
	seen := map[string]time.Time{}
	stopPoll := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stopPoll:
				return
			case <-time.After(50 * time.Millisecond):
			}
			rows, err := conn.Query(ctx, `SELECT entity_id, version FROM entities WHERE org_id = 'dev-org' AND entity_schema = 'contact'
				AND written_at_ms >= ?`, uint64(time.Now().Add(-10*time.Second).UnixMilli()))
			if err != nil {
				continue
			}
			now := time.Now()
			for rows.Next() {
				var id string
				var version uint64
				if rows.Scan(&id, &version) == nil {
					key := id + "@" + strconv.FormatUint(version, 10)
					if _, ok := seen[key]; !ok {
						seen[key] = now
					}
				}
			}
			rows.Close()
		}
	}()
	base0 := *contacts
	tick := time.NewTicker(100 * time.Millisecond)
	for sent := 0; sent < total; sent += perTick {
		<-tick.C
		go send((base0+sent)%*contacts, perTick, "U"+strconv.Itoa(sent)+"-") // a new value every time: no update is a no-op
	}
	tick.Stop()
	wait(*contacts + total)
	close(stopPoll)
	<-polled
	var fromCH, fromAccept []time.Duration
	rcv.mu.Lock()
	for id, at := range rcv.at {
		if inCH, ok := seen[id]; ok && rcv.accepted[id].After(started.Add(delivered)) {
			fromCH = append(fromCH, max(0, at.Sub(inCH)))
			fromAccept = append(fromAccept, at.Sub(rcv.accepted[id]))
		}
	}
	rcv.mu.Unlock()
	fmt.Printf("  latency at %d events/s for %d s (%d deliveries, %d timed from ClickHouse):\n", perTick*10, *seconds, total, len(fromCH))
	fmt.Printf("    entity row in ClickHouse -> webhook request: p50 %v, p99 %v\n", pct(fromCH, 50), pct(fromCH, 99))
	fmt.Printf("    event accepted -> webhook request (ingest, processor, projector flush, outbound): p50 %v, p99 %v\n", pct(fromAccept, 50), pct(fromAccept, 99))
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[min(len(ds)-1, len(ds)*p/100)].Round(time.Millisecond)
}
