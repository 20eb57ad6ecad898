package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/processor"
)

// runDrain measures the processor alone with n instances for each n of counts: the round's
// events (spread over the orgs of tokens) are accepted first with no processor running, then n
// instances start; the rate is that of the group's committed offsets from the moment the group
// is stable with n members until it has consumed everything. Ingest and the projector are idle
// (there is no projector), so the instances have the machine, the broker aside.
func runDrain(counts []int, events int, tokens []string, staticTokens, profile string, kafkaPID, clickhousePID int) {
	ctx := context.Background()
	for _, n := range counts {
		s := startSplit(0, false, profile, staticTokens)
		kcl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("KAFKA_BROKERS"), ",")...))
		if err != nil {
			panic(err)
		}
		admin := kadm.NewClient(kcl)
		var sending sync.WaitGroup
		for i, token := range tokens {
			var integ struct {
				ID string `json:"id"`
			}
			_ = json.Unmarshal(s.postAs(token, "/v2/integrations", "application/json", []byte(`{"name":"drain","use_cases":[{"name":"Customers",
		"slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
		"unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"customerNumber"},
		{"attribute":"first_name","field":"firstName"},{"attribute":"last_name","field":"lastName"},
		{"attribute":"email","field":"email","_type":"email"}]}]}}]}`)), &integ)
			var body bytes.Buffer
			for j := i; j < events; j += len(tokens) {
				p := fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"F%d","lastName":"L","email":"k%d@example.com"}`, j, j, j)
				q, _ := json.Marshal(p)
				fmt.Fprintf(&body, `{"use_case_slug":"customer","timestamp":"2026-01-01T10:00:00Z"%s,"payload":%s}`+"\n", dedupField("drain", j), q)
			}
			sending.Add(1)
			go func() {
				defer sending.Done()
				s.postAs(token, "/v3/erp/updates/events/ndjson?integration_id="+integ.ID, "application/x-ndjson", body.Bytes())
			}()
		}
		sending.Wait()
		for i := range n {
			s.startProcessor(i + 1)
		}
		meter := newCPUMeter(s.procs, kafkaPID, clickhousePID)
		// The group's first rebalances (the broker waits 3 s for members to join) are not measured.
		for {
			groups, err := admin.DescribeGroups(ctx, processor.DefaultGroup)
			if g, ok := groups[processor.DefaultGroup]; err == nil && ok && g.State == "Stable" && len(g.Members) == n {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		from, _, _ := consumedState(ctx, admin, s.topics, processor.DefaultGroup)
		start := time.Now()
		meter.begin()
		var done int64
		for {
			time.Sleep(50 * time.Millisecond)
			committed, lag, ok := consumedState(ctx, admin, s.topics, processor.DefaultGroup)
			if ok && lag == 0 && committed > from {
				done = committed - from
				break
			}
			if time.Since(start) > 10*time.Minute {
				panic("the processors did not drain the events in 10 minutes")
			}
		}
		wall := time.Since(start).Seconds()
		settling := ""
		if from > 0 {
			// An instance that joined first maps while the others join; those events are not timed.
			settling = fmt.Sprintf("; %d more mapped before the group settled with %d members, not timed", from, n)
		}
		fmt.Printf("  %d × process: %d events mapped in %.1f s (%6.0f events/s)%s\n", n, done, wall, float64(done)/wall, settling)
		meter.report(int(done), wall)
		var peaks []string
		for _, p := range s.procs {
			if strings.HasPrefix(p.name, "process-") {
				peaks = append(peaks, fmt.Sprintf("%s %.0f MiB", p.name, peakMiB(p.pid)))
			}
		}
		fmt.Printf("          peak resident memory: %s\n", strings.Join(peaks, ", "))
		kcl.Close()
		s.stop()
	}
}
