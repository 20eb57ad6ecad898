// Command ingest-bench measures accepted events per second through the ingest service alone, on a
// real Kafka (KAFKA_BROKERS): 100-event JSON requests from concurrent clients, then NDJSON streams.
// Payloads are about 1 KB. It prints events/s and can write a CPU profile of the whole process.
//
//	KAFKA_BROKERS=127.0.0.1:19092 go run ./cmd/ingest-bench -duration 10s -clients 8 [-cpuprofile f]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/cmd/internal/benchenv"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/quota"
)

func main() {
	duration := flag.Duration("duration", 10*time.Second, "how long each phase sends")
	clients := flag.Int("clients", 8, "concurrent HTTP clients for the 100-event requests")
	streams := flag.Int("streams", 2, "concurrent NDJSON streams")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the run")
	flag.Parse()
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		fmt.Fprintln(os.Stderr, "KAFKA_BROKERS is required (scripts/kafka.sh start)")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ready := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	prefix := "bench-" + ids.ULID(time.Now())[:10]
	go func() {
		done <- app.Run(ctx, app.Config{Services: []string{app.Ingest}, Listener: ln, DevMode: true, DevToken: "bench", RateLimitPerMinute: -1,
			// Ingest's capacity, not an org's budget: the first phase alone spends a minute's
			// 600,000 events, and the NDJSON phase would measure the budget's refill.
			OrgBudgets: quota.Limits{EventsPerMinute: -1, BytesPerMinute: -1},
			Kafka:      kafkax.Config{Brokers: strings.Split(brokers, ","), TopicPrefix: strings.ToLower(prefix), Partitions: 12, Replication: 1},
			Log:        log, OnReady: func(a string) { ready <- a }})
	}()
	var base string
	select {
	case a := <-ready:
		base = "http://" + a
	case err := <-done:
		panic(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	call := func(method, path, body string) map[string]any {
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench")
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	integ := call("POST", "/v2/integrations", `{"name":"bench","use_cases":[{"name":"c","slug":"customer","type":"inbound","enabled":true,
		"configuration":{"entities":[{"entity_schema":"contact","unique_ids":["id"],"fields":[{"attribute":"id","field":"id"}]}]}}]}`)
	id := integ["id"].(string)

	// The client must cost little next to the server on a 2-core machine: one payload, built once.
	p, _ := json.Marshal(map[string]any{"id": "K-1", "name": "Lena Meyer", "street": "Hauptstraße 1",
		"city": "Köln", "notes": strings.Repeat("x", 860)})
	payloadLiteral, _ := json.Marshal(string(p))
	eventPrefix := `{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":` + string(payloadLiteral) + `,"deduplication_id":"d-`
	eventJSON := func(n int64) string { return eventPrefix + fmt.Sprint(n) + `"}` }
	success := []byte(`"status":"success"`)
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	// Phase 1: 100-event requests.
	var seq, accepted atomic.Int64
	var failures atomic.Int64
	var wg sync.WaitGroup
	deadline := time.Now().Add(*duration)
	start := time.Now()
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) {
				var b strings.Builder
				b.WriteString(`{"integration_id":"` + id + `","correlation_id":"bench","events":[`)
				for i := 0; i < 100; i++ {
					if i > 0 {
						b.WriteByte(',')
					}
					b.WriteString(eventJSON(seq.Add(1)))
				}
				b.WriteString("]}")
				req, _ := http.NewRequest("POST", base+"/v3/erp/updates/events", strings.NewReader(b.String()))
				req.Header.Set("Authorization", "Bearer bench")
				resp, err := client.Do(req)
				if err != nil || resp.StatusCode != 200 {
					failures.Add(1)
					if resp != nil {
						resp.Body.Close()
					}
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				accepted.Add(int64(bytes.Count(body, success)))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	fmt.Printf("100-event requests: %d clients, %.0f events/s accepted (%d events in %.1fs, %d failed requests, ~1 KB payloads)\n",
		*clients, float64(accepted.Load())/el, accepted.Load(), el, failures.Load())

	// Phase 2: NDJSON streams of single events.
	accepted.Store(0)
	deadline = time.Now().Add(*duration)
	start = time.Now()
	for s := 0; s < *streams; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw := io.Pipe()
			go func() {
				for time.Now().Before(deadline) {
					var b bytes.Buffer
					for i := 0; i < 100; i++ {
						b.WriteString(eventJSON(seq.Add(1)) + "\n")
					}
					if _, err := pw.Write(b.Bytes()); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", base+"/v3/erp/updates/events/ndjson?integration_id="+id, pr)
			req.Header.Set("Authorization", "Bearer bench")
			req.Header.Set("Content-Type", "application/x-ndjson")
			resp, err := client.Do(req)
			if err != nil {
				failures.Add(1)
				return
			}
			defer resp.Body.Close()
			buf := make([]byte, 256<<10)
			carry := 0
			for {
				n, err := resp.Body.Read(buf[carry:])
				chunk := buf[:carry+n]
				// count whole lines only; keep a partial last line for the next read
				last := bytes.LastIndexByte(chunk, '\n')
				if last >= 0 {
					accepted.Add(int64(bytes.Count(chunk[:last+1], success)))
					carry = copy(buf, chunk[last+1:])
				} else {
					carry = len(chunk)
				}
				if err != nil {
					return
				}
			}
		}()
	}
	wg.Wait()
	el = time.Since(start).Seconds()
	fmt.Printf("NDJSON streams:     %d streams, %.0f events/s accepted (%d events in %.1fs)\n",
		*streams, float64(accepted.Load())/el, accepted.Load(), el)
	cancel()
	<-done
	benchenv.DeleteTopics(strings.Split(brokers, ","), strings.ToLower(prefix))
}
