//go:build integration

package app_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app/apptest"
)

func TestIntegrationEventsFlowFromHTTPToClickHouse(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	status, integ := e.Call("POST", "/v2/integrations", apptest.IntegrationBody)
	if status != http.StatusCreated {
		t.Fatalf("create integration: %d %v", status, integ)
	}
	id := integ["id"].(string)

	// 300 events in 3 requests of 100, as an ERP batch would send them.
	for r := 0; r < 3; r++ {
		var events []string
		for i := 0; i < 100; i++ {
			n := r*100 + i
			events = append(events, apptest.CustomerEvent(n, "Lena", fmt.Sprintf("d-%d", n)))
		}
		e.Send(id, fmt.Sprintf("batch-%d", r), events)
	}
	// One event whose payload is not JSON: answered as an error and counted as one.
	status, res := e.Call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","meta":{"correlation_id":"bad"},"events":[`+
		`{"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":"{not json"}]}`)
	if status != http.StatusOK || res["results"].([]any)[0].(map[string]any)["status"] != "error" {
		t.Fatalf("malformed payload: %d %v", status, res)
	}

	st := e.WaitStats(id, 301)
	t.Logf("stats after 301 events: %v", st)
	if st["total_events"] != 301.0 || st["success_count"] != 300.0 || st["error_count"] != 1.0 || st["last_error_at"] == nil {
		t.Fatalf("stats = %v, want 301 total, 300 success, 1 error", st)
	}
	attrs, count := e.Entity("K-42")
	if count != 300 {
		t.Errorf("%d contact entities in ClickHouse, want 300", count)
	}
	want := map[string]any{"customer_number": "K-42", "first_name": "Lena", "full_name": "Lena Meyer", "city": "Köln", "source": "SAP"}
	for k, v := range want {
		if attrs[k] != v {
			t.Errorf("entity K-42 %s = %v, want %v", k, attrs[k], v)
		}
	}

	// The error is findable, with the use case and cause in its message and the batch's correlation id.
	status, page := e.Call("POST", "/v1/monitoring/events", `{"integration_id":"`+id+`","status":["error"],"limit":10}`)
	if status != http.StatusOK || len(page["data"].([]any)) != 1 {
		t.Fatalf("error search: %d %v", status, page)
	}
	bad := page["data"].([]any)[0].(map[string]any)
	if bad["code"] != "MALFORMED_PAYLOAD" || bad["correlation_id"] != "bad" || !strings.Contains(bad["message"].(string), "not valid JSON") {
		t.Errorf("error row = %v", bad)
	}

	// Keyset pagination walks every row exactly once.
	seen := map[string]bool{}
	cursor := ""
	for pages := 0; ; pages++ {
		body := `{"integration_id":"` + id + `","limit":100`
		if cursor != "" {
			body += `,"cursor":"` + cursor + `"`
		}
		status, page := e.Call("POST", "/v1/monitoring/events", body+"}")
		if status != http.StatusOK {
			t.Fatalf("page %d: %d %v", pages, status, page)
		}
		for _, row := range page["data"].([]any) {
			rid := row.(map[string]any)["id"].(string)
			if seen[rid] {
				t.Fatalf("row %s on two pages", rid)
			}
			seen[rid] = true
		}
		if page["has_more"] != true {
			break
		}
		cursor = page["next_cursor"].(string)
	}
	if len(seen) != 301 {
		t.Errorf("paged through %d rows, want 301", len(seen))
	}

	// A restart keeps configuration, consumer offsets and counts: nothing is lost or counted twice.
	e.Stop()
	e.Start()
	if status, got := e.Call("GET", "/v2/integrations/"+id, ""); status != http.StatusOK || len(got["use_cases"].([]any)) != 1 {
		t.Fatalf("integration after restart: %d %v", status, got)
	}
	e.Send(id, "after-restart", []string{apptest.CustomerEvent(42, "Lea", "d-42-v2")})
	// A deduplication id accepted before the restart is still known: the copy is skipped.
	e.Send(id, "resent", []string{apptest.CustomerEvent(5, "Changed", "d-5")})
	st = e.WaitStats(id, 303)
	if st["total_events"] != 303.0 || st["success_count"] != 301.0 || st["skipped_count"] != 1.0 {
		t.Fatalf("stats after restart = %v, want 303 total, 301 success, 1 skipped", st)
	}
	if attrs, _ := e.Entity("K-5"); attrs["first_name"] != "Lena" {
		t.Errorf("a duplicate changed entity K-5: %v", attrs)
	}
	attrs, count = e.Entity("K-42")
	if attrs["first_name"] != "Lea" || attrs["full_name"] != "Lea Meyer" || count != 300 {
		t.Errorf("after the update: K-42 = %v, %d entities; want first_name Lea and still 300 entities", attrs, count)
	}
}

func TestIntegrationDisabledUseCaseAndUnknownSlug(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	_, integ := e.Call("POST", "/v2/integrations", apptest.IntegrationBody)
	id := integ["id"].(string)
	uc := integ["use_cases"].([]any)[0].(map[string]any)
	if status, body := e.Call("PUT", "/v1/integrations/"+id+"/use-cases/"+uc["id"].(string), `{"enabled":false}`); status != http.StatusOK {
		t.Fatalf("disable: %d %v", status, body)
	}
	status, body := e.Call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","events":[`+apptest.CustomerEvent(1, "A", "x1")+`]}`)
	if status != http.StatusOK || body["results"].([]any)[0].(map[string]any)["status"] != "ignored" {
		t.Fatalf("event to a disabled use case: %d %v", status, body)
	}
	status, body = e.Call("POST", "/v3/erp/updates/events", `{"integration_id":"`+id+`","events":[`+strings.Replace(apptest.CustomerEvent(1, "A", "x2"), `"customer"`, `"nope"`, 1)+`]}`)
	if status != http.StatusOK || body["results"].([]any)[0].(map[string]any)["status"] != "ignored" {
		t.Fatalf("unknown slug: %d %v", status, body)
	}
	// Both are in monitoring as skipped, with their codes.
	st := e.WaitStats(id, 2)
	if st["skipped_count"] != 2.0 {
		t.Fatalf("stats %v, want 2 skipped", st)
	}
}

func TestIntegrationEveryEventEndpointAndTheDedupWindow(t *testing.T) {
	e := apptest.New(t)
	var mu sync.Mutex
	clock := time.Now().UTC()
	e.StartWithClock(func() time.Time { mu.Lock(); defer mu.Unlock(); return clock })
	advance := func(d time.Duration) { mu.Lock(); clock = clock.Add(d); mu.Unlock() }

	_, integ := e.Call("POST", "/v2/integrations", apptest.IntegrationBody)
	id := integ["id"].(string)
	if status, body := e.Call("PUT", "/v1/integrations/"+id+"/app-mapping",
		`{"app_id":"sap-app","component_id":"44444444-4444-4444-8444-444444444444"}`); status != http.StatusOK {
		t.Fatalf("app mapping: %d %v", status, body)
	}
	// v2: routed by object_type (the use case's name); v1: by the app mapping.
	v2 := `{"integration_id":"` + id + `","correlation_id":"v2","events":[{"event_type":"UPDATE","object_type":"Customers",` +
		`"timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"customerNumber\":\"V2\",\"firstName\":\"Two\",\"lastName\":\"X\"}"}]}`
	v1 := `{"app_id":"sap-app","component_id":"44444444-4444-4444-8444-444444444444","meta":{"correlation_id":"v1"},"events":[{"event_type":"CREATE",` +
		`"object_type":"Customers","timestamp":"2025-05-01T08:30:00Z","format":"json","payload":"{\"customerNumber\":\"V1\",\"firstName\":\"One\",\"lastName\":\"X\"}"}]}`
	// XML: the root element is the top-level key, so this use case maps from it.
	if status, body := e.Call("POST", "/v1/integrations/"+id+"/use-cases", `{"name":"Customers XML","slug":"customer-xml","type":"inbound",
		"enabled":true,"configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"jsonataExpression":"c",
		"fields":[{"attribute":"customer_number","field":"customerNumber"},{"attribute":"first_name","field":"firstName"}]}]}}`); status != http.StatusCreated {
		t.Fatalf("xml use case: %d %v", status, body)
	}
	xml := `{"integration_id":"` + id + `","events":[{"use_case_slug":"customer-xml","timestamp":"2025-05-01T08:30:00Z","format":"xml",` +
		`"payload":"<c><customerNumber>X1</customerNumber><firstName>Ex</firstName><lastName>Em</lastName></c>"}]}`
	for path, body := range map[string]string{"/v2/erp/updates/events": v2, "/v1/erp/updates/events": v1, "/v3/erp/updates/events": xml} {
		status, res := e.Call("POST", path, body)
		if status != http.StatusOK || res["results"].([]any)[0].(map[string]any)["status"] != "success" {
			t.Fatalf("%s: %d %v", path, status, res)
		}
	}
	// NDJSON: 50 single-event lines.
	var nd strings.Builder
	for i := 0; i < 50; i++ {
		nd.WriteString(apptest.CustomerEvent(1000+i, "Bulk", fmt.Sprintf("bulk-%d", i)) + "\n")
	}
	req, _ := http.NewRequest("POST", e.URL+"/v3/erp/updates/events/ndjson?integration_id="+id, strings.NewReader(nd.String()))
	req.Header.Set("Authorization", "Bearer it-token")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(raw), `"status":"success"`); n != 50 {
		t.Fatalf("NDJSON accepted %d of 50: %s", n, raw)
	}

	// Deduplication: inside the window a copy is skipped, after 24 h it is processed again.
	e.Send(id, "dedup", []string{apptest.CustomerEvent(7, "First", "doc-7")})
	advance(time.Hour)
	e.Send(id, "dedup", []string{apptest.CustomerEvent(7, "Copy", "doc-7")})
	advance(24 * time.Hour)
	e.Send(id, "dedup", []string{apptest.CustomerEvent(7, "Later", "doc-7")})

	st := e.WaitStats(id, 56)
	if st["total_events"] != 56.0 || st["success_count"] != 55.0 || st["skipped_count"] != 1.0 {
		_, errs := e.Call("POST", "/v1/monitoring/events", `{"integration_id":"`+id+`","status":["error"]}`)
		t.Fatalf("stats %v, want 56 events: 55 processed, 1 duplicate skipped; errors: %v", st, errs)
	}
	if attrs, _ := e.Entity("K-7"); attrs["first_name"] != "Later" {
		t.Errorf("K-7 = %v, want the copy after the window applied", attrs)
	}
	if attrs, _ := e.Entity("X1"); attrs["first_name"] != "Ex" {
		t.Errorf("the XML event mapped to %v", attrs)
	}
	for _, c := range []string{"V1", "V2"} {
		if attrs, _ := e.Entity(c); attrs["customer_number"] != c {
			t.Errorf("entity %s = %v", c, attrs)
		}
	}
}
