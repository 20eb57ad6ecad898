//go:build integration

package app_test

import (
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/erpstream/erpstream/app/apptest"
)

// collector is an OTLP/HTTP trace receiver: span names by trace id, and the links of each span.
type collector struct {
	mu     sync.Mutex
	traces map[string][]string
	linked map[string]bool // trace ids some span links to
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err := proto.Unmarshal(body, &req); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c.mu.Lock()
	for _, rs := range req.ResourceSpans {
		for _, ss := range rs.ScopeSpans {
			for _, s := range ss.Spans {
				id := hex.EncodeToString(s.TraceId)
				c.traces[id] = append(c.traces[id], s.Name)
				for _, l := range s.Links {
					c.linked[hex.EncodeToString(l.TraceId)] = true
				}
			}
		}
	}
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-protobuf")
	_, _ = w.Write(nil)
}

// findTrace returns the span names of the trace that holds a span named first.
func (c *collector) findTrace(first string) (string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, names := range c.traces {
		for _, n := range names {
			if n == first {
				return id, append([]string(nil), names...)
			}
		}
	}
	return "", nil
}

// One trace from the HTTP request that sends an event, through Kafka, to the mapping and the
// webhook delivery of the change; the projector's ClickHouse batch links to it. Exported by OTLP
// to a collector named by the standard OTEL_* variables.
func TestIntegrationOneTraceFromRequestToWebhook(t *testing.T) {
	col := &collector{traces: map[string][]string{}, linked: map[string]bool{}}
	otlp := httptest.NewServer(col)
	defer otlp.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", otlp.URL)
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
	rcv := &receiver{slow: make(chan struct{})}
	stub := stubOn127002(t, rcv.handle)
	e := outboundEnv(t)
	id := outboundIntegration(t, e, stub.URL)
	e.SendOne(id, "customer", `{"customerNumber":"TR-1","firstName":"Tracy","lastName":"Span"}`)
	apptest.WaitFor(t, func() bool { return len(rcv.got("/ok")) >= 1 })
	if tp := rcv.got("/ok")[0].header.Get("traceparent"); tp == "" {
		t.Error("the webhook request carries no traceparent")
	}
	var traceID string
	var names []string
	apptest.WaitFor(t, func() bool {
		traceID, names = col.findTrace("POST /v3/erp/updates/events")
		joined := strings.Join(names, "|")
		return strings.Contains(joined, "map event") && strings.Contains(joined, "deliver webhook")
	})
	apptest.WaitFor(t, func() bool {
		col.mu.Lock()
		defer col.mu.Unlock()
		return col.linked[traceID]
	})
	t.Logf("trace %s: %v; a ClickHouse batch span links to it", traceID, names)
}
