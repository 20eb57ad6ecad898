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

// Options of the drain runs (-spread, -ahead, -heavy): extraEnv is added to every process's environment.
var (
	spreadOrgs   bool
	aheadOrgs    bool
	heavyMapping int
	extraEnv     []string
)

// drainFields is the drain's mapping's fields: a five-field contact, and with -heavy a field
// whose expression sums 1…N, standing in for a costlier mapping.
func drainFields() string {
	fields := `{"attribute":"customer_number","field":"customerNumber"},
		{"attribute":"first_name","field":"firstName"},{"attribute":"last_name","field":"lastName"},
		{"attribute":"email","field":"email","_type":"email"}`
	if heavyMapping > 0 {
		fields += fmt.Sprintf(`,{"attribute":"score","jsonataExpression":"$sum([1..%d])"}`, heavyMapping)
	}
	return fields
}

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
		"unique_ids":["customer_number"],"fields":[`+drainFields()+`]}]}}]}`)), &integ)
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
		start := time.Now()
		meter.begin()
		for {
			time.Sleep(50 * time.Millisecond)
			// Drained when no partition is more than a transaction marker behind. A spread org's
			// copies are written in the transactions that commit past their originals, so they
			// are in the lag until applied.
			if _, lag, ok := consumedState(ctx, admin, s.topics, processor.DefaultGroup); ok && lag <= 1 {
				break
			}
			if time.Since(start) > 10*time.Minute {
				panic("the processors did not drain the events in 10 minutes")
			}
		}
		wall := time.Since(start).Seconds()
		// An event's one monitoring row says when it was mapped; those before start were mapped
		// while the group was forming. (Offsets would count a spread org's copies twice.)
		done, before := mappedSince(ctx, kcl, s.topics+".monitoring", start)
		settling := ""
		if before > 0 {
			// An instance that joined first maps while the others join; those events are not timed.
			settling = fmt.Sprintf("; %d more mapped before the group settled with %d members, not timed", before, n)
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

// mappedSince counts the committed monitoring rows of a topic written at or after start, and
// those written before.
func mappedSince(ctx context.Context, cl *kgo.Client, topic string, start time.Time) (since, before int64) {
	reader, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("KAFKA_BROKERS"), ",")...), kgo.ConsumeTopics(topic),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		panic(err)
	}
	defer reader.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		panic(err)
	}
	left := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			left[o.Partition] = o.Offset
		}
	})
	for len(left) > 0 {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		fs := reader.PollFetches(pctx)
		cancel()
		if pctx.Err() != nil && fs.NumRecords() == 0 {
			break // only transaction markers are left
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Timestamp.Before(start) {
				before++
			} else {
				since++
			}
			if r.Offset+1 >= left[r.Partition] {
				delete(left, r.Partition)
			}
		})
	}
	return since, before
}
