// Command callout-bench measures what erpstream adds to a partner call: the same GET to a
// loopback upstream directly, as a managed call (API key auth, response mapping, monitoring row)
// and through the secure proxy (static_ip), one request at a time. It prints p50 and p99 of each
// and the overhead over the direct call, then how many token requests 100 concurrent managed calls
// with no cached OAuth2 token make.
//
//	KAFKA_BROKERS=127.0.0.1:19092 go run ./cmd/callout-bench -n 2000
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/cmd/internal/benchenv"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/secrets"
)

func main() {
	n := flag.Int("n", 2000, "requests per variant")
	flag.Parse()
	brokers := os.Getenv("KAFKA_BROKERS")
	if brokers == "" {
		fmt.Fprintln(os.Stderr, "KAFKA_BROKERS is required (scripts/kafka.sh start)")
		os.Exit(2)
	}
	var tokens atomic.Int32
	upstream, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		panic(err)
	}
	go func() {
		_ = http.Serve(upstream, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/token" {
				time.Sleep(20 * time.Millisecond)
				tokens.Add(1)
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, `{"access_token":"t","token_type":"Bearer","expires_in":3600}`)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"customerNumber":"K-1","firstName":"Lea","lastName":"Meyer","city":"Köln"}`)
		}))
	}()
	upstreamURL := "http://" + upstream.Addr().String()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	prefix := strings.ToLower("bench-" + ids.ULID(time.Now())[:10])
	defer benchenv.DeleteTopics(strings.Split(brokers, ","), prefix)
	go func() {
		done <- app.Run(context.Background(), app.Config{Services: []string{app.Ingest}, Listener: ln, DevMode: true, DevToken: "bench",
			RateLimitPerMinute: -1, OrgOutboundConcurrency: -1, SecretsKey: secrets.NewKey(),
			EgressAllowCIDRs: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
			Kafka:            kafkax.Config{Brokers: strings.Split(brokers, ","), TopicPrefix: prefix, Partitions: 4, Replication: 1},
			Log:              slog.New(slog.NewTextHandler(io.Discard, nil)), OnReady: func(a string) { ready <- a }})
	}()
	var base string
	select {
	case a := <-ready:
		base = "http://" + a
	case err := <-done:
		panic(err)
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}
	call := func(method, url, body string) (int, map[string]any) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer bench")
		resp, err := client.Do(req)
		if err != nil {
			panic(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	must := func(status int, body map[string]any) map[string]any {
		if status >= 300 {
			panic(fmt.Sprintf("%d %v", status, body))
		}
		return body
	}
	must(call("PUT", base+"/v1/environment/KEY", `{"value":"k-1","type":"SecretString"}`))
	integ := must(call("POST", base+"/v2/integrations", `{"name":"bench","integration_type":"connector",
		"connector_config":{"base_url":"`+upstreamURL+`","auth":{"type":"api_key","api_key":"{{env.KEY}}"}},"use_cases":[
		{"name":"get","slug":"get","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/customers/{{id}}"},
		 "response_mapping":"{\"name\": firstName & ' ' & lastName}"}},
		{"name":"proxy","slug":"proxy","type":"secure_proxy","enabled":true,"configuration":{"vpc_mode":"static_ip"}}]}`))
	id := integ["id"].(string)
	oauth := must(call("POST", base+"/v2/integrations", `{"name":"oauth","integration_type":"connector",
		"connector_config":{"base_url":"`+upstreamURL+`","auth":{"type":"oauth2_client_credentials","token_url":"`+upstreamURL+`/token",
		"client_id":"c","client_secret":"{{env.KEY}}"}},"use_cases":[
		{"name":"get","slug":"get","type":"managed_call","enabled":true,"configuration":{"operation":{"method":"GET","path":"/customers/1"}}}]}`))

	measure := func(name string, fn func()) []time.Duration {
		for i := 0; i < 50; i++ {
			fn() // warm connections and caches
		}
		out := make([]time.Duration, *n)
		for i := range out {
			t := time.Now()
			fn()
			out[i] = time.Since(t)
		}
		sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
		fmt.Printf("  %-14s p50 %8.3f ms   p99 %8.3f ms\n", name, ms(pct(out, 50)), ms(pct(out, 99)))
		return out
	}
	direct := measure("direct", func() {
		resp, err := client.Get(upstreamURL + "/customers/K-1")
		if err != nil {
			panic(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	})
	managed := measure("managed call", func() {
		must(call("POST", base+"/v1/managed-call/get/execute", `{"integration_id":"`+id+`","payload":{"id":"K-1"}}`))
	})
	proxied := measure("secure proxy", func() {
		must(call("POST", base+"/v1/secure-proxy", `{"integration_id":"`+id+`","use_case_slug":"proxy","url":"`+upstreamURL+`/customers/K-1","method":"GET"}`))
	})
	fmt.Printf("  overhead: managed call p50 %.3f ms, p99 %.3f ms; secure proxy p50 %.3f ms, p99 %.3f ms\n",
		ms(pct(managed, 50)-pct(direct, 50)), ms(pct(managed, 99)-pct(direct, 99)),
		ms(pct(proxied, 50)-pct(direct, 50)), ms(pct(proxied, 99)-pct(direct, 99)))

	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			must(call("POST", base+"/v1/managed-call/get/execute", `{"integration_id":"`+oauth["id"].(string)+`","payload":{}}`))
		}()
	}
	wg.Wait()
	fmt.Printf("  100 concurrent managed calls without a cached OAuth2 token: %d token request(s)\n", tokens.Load())
}

func pct(d []time.Duration, p int) time.Duration { return d[(len(d)-1)*p/100] }

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
