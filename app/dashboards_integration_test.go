//go:build integration

package app_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app/apptest"
)

type dashboard struct {
	Title  string `json:"title"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr   string `json:"expr"`
			RawSQL string `json:"rawSql"`
		} `json:"targets"`
	} `json:"panels"`
}

func readDashboard(t *testing.T, name string) dashboard {
	t.Helper()
	b, err := os.ReadFile("../deploy/observability/grafana/dashboards/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s does not parse: %v", name, err)
	}
	if len(d.Panels) == 0 {
		t.Fatalf("%s has no panels", name)
	}
	return d
}

// The shipped Grafana dashboards read what erpstream exports: after inbound events and an
// outbound delivery, every metric a Prometheus panel queries is on /metrics, and every SQL panel
// runs on ClickHouse (18.16 here) over the monitoring tables.
func TestIntegrationDashboardsReadWhatErpstreamExports(t *testing.T) {
	rcv := &receiver{slow: make(chan struct{})}
	stub := stubOn127002(t, rcv.handle)
	e := outboundEnv(t)
	id := outboundIntegration(t, e, stub.URL)
	e.SendOne(id, "customer", `{"customerNumber":"G-1","firstName":"Gra","lastName":"Fana"}`)
	apptest.WaitFor(t, func() bool { return len(rcv.got("/ok")) >= 1 })
	e.WaitStats(id, 1)
	apptest.WaitFor(t, func() bool { // the delivery and the failing mapping's error are stored
		from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
		_, page := e.Call("POST", "/v1/integrations/"+id+"/monitoring/outbound-events", `{"from_date":"`+from+`"}`)
		rows, _ := page["data"].([]any)
		return len(rows) >= 2
	})

	metric := regexp.MustCompile(`\berpstream_[a-z0-9_]+`)
	var exported map[string]bool
	wanted := map[string]string{}
	for _, p := range readDashboard(t, "erpstream-pipeline.json").Panels {
		for _, tg := range p.Targets {
			if tg.Expr == "" {
				t.Errorf("panel %q has a target without a query", p.Title)
			}
			for _, m := range metric.FindAllString(tg.Expr, -1) {
				wanted[strings.TrimSuffix(m, "_bucket")] = p.Title
			}
		}
	}
	apptest.WaitFor(t, func() bool { // lag and Kafka client metrics appear within seconds
		resp, err := e.Metrics()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("metrics: %v", err)
		}
		defer resp.Body.Close()
		exported = map[string]bool{}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) >= 3 && f[0] == "#" && f[1] == "TYPE" {
				exported[f[2]] = true
			}
		}
		for m := range wanted {
			if !exported[m] {
				return false
			}
		}
		return true
	})
	for m, panel := range wanted {
		if !exported[m] {
			t.Errorf("panel %q queries %s, which erpstream does not export", panel, m)
		}
	}
	t.Logf("%d metrics of the pipeline dashboard exported", len(wanted))

	timeFilter := regexp.MustCompile(`\$__timeFilter\((\w+)\)`)
	for _, p := range readDashboard(t, "erpstream-monitoring.json").Panels {
		for _, tg := range p.Targets {
			q := timeFilter.ReplaceAllString(tg.RawSQL, "$1 >= now() - 86400 AND $1 <= now()")
			if strings.Contains(q, "$") {
				t.Errorf("panel %q: unknown macro in %s", p.Title, q)
				continue
			}
			rows, err := e.Conn.Query(t.Context(), q)
			if err != nil {
				t.Errorf("panel %q does not run on ClickHouse: %v\n%s", p.Title, err, q)
				continue
			}
			n := 0
			for rows.Next() {
				n++
			}
			rows.Close()
			if n == 0 {
				t.Errorf("panel %q shows nothing after events and a delivery", p.Title)
			}
		}
	}
}
