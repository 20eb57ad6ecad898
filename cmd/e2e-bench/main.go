// Command e2e-bench measures the whole pipeline on real services: N events of new contacts sent
// as one NDJSON stream go through ingest, the processor and the projector until ClickHouse holds N
// entities; then N updates of those contacts, until every one shows its new value. It prints the
// seconds and events/s of each round, on Apache Kafka (KAFKA_BROKERS) and ClickHouse
// (CLICKHOUSE_ADDR), in topics and a database of its own.
//
// By default every service runs in this process. With -split the stages run as processes of their
// own (ingest, -processors × process, project), and each round also prints the CPU time each
// process spent per event, the broker's and ClickHouse's included when their pid files are given:
// where the time goes.
//
//	KAFKA_BROKERS=127.0.0.1:19092 CLICKHOUSE_ADDR=127.0.0.1:19000 go run ./cmd/e2e-bench -events 100000
//	… go run ./cmd/e2e-bench -split -processors 3 -kafka-pid .run/test/kafka/kafka.pid -clickhouse-pid .run/clickhouse/clickhouse.pid
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/processor"
	"github.com/erpstream/erpstream/projector"

	"github.com/erpstream/erpstream/cmd/internal/benchenv"
)

func main() {
	events := flag.Int("events", 100_000, "events per round")
	warmup := flag.Int("warmup", 20_000, "events of an unmeasured first round (other contacts): a broker just started spends its first seconds compiling (JIT)")
	split := flag.Bool("split", false, "run the stages as processes of their own and print CPU per event")
	processors := flag.Int("processors", 1, "process instances (with -split)")
	drain := flag.String("drain", "", "measure the processor alone: for each count (\"1,2,3\"), that many instances map a backlog of -events events of -orgs orgs (implies -split)")
	orgs := flag.Int("orgs", 1, "orgs the events are spread over, each in an events partition of its own, sent at once (with -split; at most 12)")
	kafkaPID := flag.String("kafka-pid", "", "the Kafka broker's pid file (with -split)")
	clickhousePID := flag.String("clickhouse-pid", "", "ClickHouse's pid file (with -split)")
	progress := flag.Bool("progress", false, "print every second how far each consumer group is behind (where the pipeline waits)")
	flag.BoolVar(&withDedupIDs, "dedup", false, "give every event a deduplication id of its own (the processor checks and marks each)")
	flag.StringVar(&heapProfile, "memprofile", "", "write heap profiles of every stage's process while it runs (every 10 s), to <file>.<process> (with -split or -drain)")
	flag.BoolVar(&aheadOrgs, "ahead", false, "map the orgs ahead (ERPSTREAM_ORG_MAP_AHEAD): the instances not holding an org's partition map a share of its events for it (with -drain)")
	flag.BoolVar(&spreadOrgs, "spread", false, "spread the orgs (ERPSTREAM_ORG_SPREAD): every process instance maps a share of each org's events (with -drain)")
	flag.IntVar(&heavyMapping, "heavy", 0, "add a field summing 1…N to the drain's mapping, a costlier mapping (with -drain; 3000: about 0.1 ms an event here)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to the file (with -split: of every stage's process, to <file>.<process>)")
	flag.Parse()
	if *cpuProfile != "" && !*split {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			panic(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			panic(err)
		}
		defer pprof.StopCPUProfile()
	}
	ctx := context.Background()
	var conn driver.Conn
	var postAs func(token, path, contentType string, body []byte) []byte
	tokens := []string{"bench"} // the dev token: dev-org
	if *orgs > 1 {
		if !*split && *drain == "" || *orgs > 12 {
			fmt.Fprintln(os.Stderr, "-orgs needs -split and at most 12 (the partitions)")
			os.Exit(2)
		}
		tokens = nil
	}
	var staticTokens []string
	for i, taken := 0, map[int32]bool{}; *orgs > 1 && len(tokens) < *orgs; i++ {
		org := fmt.Sprint("bench-org-", i)
		if part := kafkax.OrgPartition([]byte(org), 12); !taken[part] {
			taken[part] = true
			tokens = append(tokens, "bench-"+org)
			staticTokens = append(staticTokens, "bench-"+org+"="+org)
		}
	}
	if *drain != "" {
		var counts []int
		for _, c := range strings.Split(*drain, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(c))
			if err != nil || n < 1 {
				fmt.Fprintf(os.Stderr, "-drain %q: not a list of instance counts\n", *drain)
				os.Exit(2)
			}
			counts = append(counts, n)
		}
		if spreadOrgs || aheadOrgs {
			var orgIDs []string
			for _, st := range staticTokens {
				orgIDs = append(orgIDs, st[strings.IndexByte(st, '=')+1:])
			}
			if len(orgIDs) == 0 {
				orgIDs = []string{"dev-org"}
			}
			setting := "ERPSTREAM_ORG_SPREAD="
			if aheadOrgs {
				setting = "ERPSTREAM_ORG_MAP_AHEAD="
			}
			extraEnv = append(extraEnv, setting+strings.Join(orgIDs, ","))
		}
		runDrain(counts, *events, tokens, strings.Join(staticTokens, ","), *cpuProfile, pidFrom(*kafkaPID), pidFrom(*clickhousePID))
		return
	}
	var meter *cpuMeter
	var topicPrefix string
	if *split {
		s := startSplit(*processors, true, *cpuProfile, strings.Join(staticTokens, ","))
		defer s.stop()
		c, err := chx.Open(ctx, chx.Config{Addr: os.Getenv("CLICKHOUSE_ADDR"), Database: s.database, User: "default"})
		if err != nil {
			panic(err)
		}
		conn, postAs, topicPrefix = c, s.postAs, s.topics
		meter = newCPUMeter(s.procs, pidFrom(*kafkaPID), pidFrom(*clickhousePID))
		fmt.Printf("  stages as processes: ingest, %d × process, project; %d org(s)\n", *processors, len(tokens))
	} else {
		stateDir, err := os.MkdirTemp("", "e2e-bench-state")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(stateDir)
		// The entity state on disk, as deployments (and -split) run it.
		env := benchenv.Start("e2e", func(c *app.Config) { c.ProcessorStateDir = stateDir })
		defer env.Stop()
		conn, topicPrefix = env.Conn, env.TopicPrefix
		postAs = func(_, path, contentType string, body []byte) []byte { return env.Post(path, contentType, body) }
	}
	integrations := make([]string, len(tokens))
	for i, token := range tokens {
		var integ struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(postAs(token, "/v2/integrations", "application/json", []byte(`{"name":"e2e","use_cases":[{"name":"Customers",
		"slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
		"unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"customerNumber"},
		{"attribute":"first_name","field":"firstName"},{"attribute":"last_name","field":"lastName"},
		{"attribute":"email","field":"email","_type":"email"},{"attribute":"round","field":"round"}]}]}}]}`)), &integ)
		integrations[i] = integ.ID
	}

	kcl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(os.Getenv("KAFKA_BROKERS"), ",")...))
	if err != nil {
		panic(err)
	}
	defer kcl.Close()
	admin := kadm.NewClient(kcl)
	type roundSpec struct {
		name, key string // the round attribute; the customer numbers' prefix
		events    int
	}
	rounds := []roundSpec{{"new", "K", *events}, {"update", "K", *events}}
	if *warmup > 0 {
		rounds = append([]roundSpec{{"warmup", "W", *warmup}}, rounds...)
	}
	for _, r := range rounds {
		round, events := r.name, &r.events
		// Each org's share of the round as one NDJSON stream; the streams are sent at once.
		bodies := make([]bytes.Buffer, len(tokens))
		for i := 0; i < *events; i++ {
			p := fmt.Sprintf(`{"customerNumber":"%s-%d","firstName":"F%d","lastName":"L","email":"k%d@example.com","round":"%s"}`, r.key, i, i, i, round)
			q, _ := json.Marshal(p)
			fmt.Fprintf(&bodies[i%len(tokens)], `{"use_case_slug":"customer","timestamp":"2026-01-01T10:00:00Z"%s,"payload":%s}`+"\n",
				dedupField(round, i), q)
		}
		measured := round != "warmup"
		if meter != nil && measured {
			meter.begin()
		}
		start := time.Now()
		stopProgress := func() {}
		if *progress {
			stopProgress = printProgress(ctx, admin, topicPrefix, start)
		}
		var sending sync.WaitGroup
		for i, token := range tokens {
			sending.Add(1)
			go func() {
				defer sending.Done()
				postAs(token, "/v3/erp/updates/events/ndjson?integration_id="+integrations[i], "application/x-ndjson", bodies[i].Bytes())
			}()
		}
		sending.Wait()
		if *progress {
			fmt.Printf("    %5.1f s: ingest answered the stream\n", time.Since(start).Seconds())
		}
		// The round ends with the projector's last offset commit (it commits after its insert).
		// Lag alone cannot say when that was: a partition's end can hold transaction markers
		// the group never commits past. So the wait watches the groups' committed offsets and
		// counts the entities once the lag is at most a marker per partition, or nothing has
		// moved for two seconds; the round's time is that of the last move it saw.
		lastMove := time.Now()
		var committed int64
		for {
			time.Sleep(100 * time.Millisecond)
			sum, lag, ok := consumedState(ctx, admin, topicPrefix, processor.DefaultGroup, projector.DefaultGroup)
			if ok && sum != committed {
				committed, lastMove = sum, time.Now()
			}
			if !(ok && (lag <= 1 || time.Since(lastMove) > 2*time.Second)) && time.Since(start) < 10*time.Minute {
				continue
			}
			var n uint64
			if err := conn.QueryRow(ctx, `SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'
				AND visitParamExtractString(attributes, 'round') = ?`, round).Scan(&n); err != nil {
				panic(err)
			}
			if n == uint64(*events) {
				break
			}
			if *progress {
				fmt.Printf("    %5.1f s: %d of %d entities show the round\n", time.Since(start).Seconds(), n, *events)
			}
			if time.Since(start) > 10*time.Minute {
				panic(fmt.Sprintf("round %s: %d of %d entities after 10 minutes", round, n, *events))
			}
			lastMove = time.Now() // not done: wait for the next move (or two quiet seconds)
		}
		stopProgress()
		s := lastMove.Sub(start).Seconds()
		if !measured {
			continue
		}
		fmt.Printf("  %-7s %7d events NDJSON → ClickHouse entities: %5.1f s (%6.0f events/s)\n", round, *events, s, float64(*events)/s)
		if meter != nil {
			meter.report(*events, s)
		}
	}
}

// heapProfile is -memprofile.
var heapProfile string

// withDedupIDs gives every event a deduplication id (-dedup).
var withDedupIDs bool

// dedupField is the event's deduplication id field (with its leading comma), or nothing.
func dedupField(round string, i int) string {
	if !withDedupIDs {
		return ""
	}
	return fmt.Sprintf(`,"deduplication_id":"%s-%d"`, round, i)
}
