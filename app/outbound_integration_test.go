//go:build integration

package app_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/outbound"
)

// receiver is an ERP's webhook endpoint on 127.0.0.2: it keeps every request it gets.
type receiver struct {
	mu   sync.Mutex
	reqs map[string][]receivedRequest // by path
	// flaky answers 500 to its first failures requests.
	failures int
	// slow holds /slow requests until released.
	slow chan struct{}
	// slowInFlight counts /slow requests being held.
	slowInFlight int
}

type receivedRequest struct {
	header http.Header
	body   []byte
	at     time.Time
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	if r.reqs == nil {
		r.reqs = map[string][]receivedRequest{}
	}
	r.reqs[req.URL.Path] = append(r.reqs[req.URL.Path], receivedRequest{header: req.Header.Clone(), body: body, at: time.Now()})
	n := len(r.reqs[req.URL.Path])
	r.mu.Unlock()
	switch req.URL.Path {
	case "/flaky":
		if n <= r.failures {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error":"try again"}`))
			return
		}
	case "/gone":
		w.WriteHeader(http.StatusGone)
		return
	case "/slow":
		r.mu.Lock()
		r.slowInFlight++
		r.mu.Unlock()
		<-r.slow
		r.mu.Lock()
		r.slowInFlight--
		r.mu.Unlock()
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"received":true}`))
}

func (r *receiver) got(path string) []receivedRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]receivedRequest(nil), r.reqs[path]...)
}

const webhookSecret = "whsec_" + "c2VjcmV0LXNpZ25pbmcta2V5LWZvci10ZXN0cw=="

func outboundEnv(t *testing.T) *apptest.Env {
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.EgressTimeout = 20 * time.Second
		c.SecretsKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
		c.Outbound.RetryDelays = []time.Duration{200 * time.Millisecond, 400 * time.Millisecond, 400 * time.Millisecond, time.Second, time.Second}
		c.Outbound.AckWindow = time.Hour
	}
	e.Start()
	return e
}

// outboundIntegration creates the customer integration with outbound use cases on contact events.
func outboundIntegration(t *testing.T, e *apptest.Env, base string) string {
	t.Helper()
	for _, put := range [][2]string{
		{"/v1/environment/WH_SECRET", `{"value":"` + webhookSecret + `","type":"SecretString"}`},
		{"/v1/webhooks/erp-ok", `{"name":"ERP","url":"` + base + `/ok","signing_secret":"{{env.WH_SECRET}}","headers":{"X-Tenant":"t1"}}`},
		{"/v1/webhooks/erp-slow", `{"name":"Slow ERP","url":"` + base + `/slow","signing_secret":"{{env.WH_SECRET}}"}`},
	} {
		if status, body := e.Call("PUT", put[0], put[1]); status != http.StatusOK && status != http.StatusCreated {
			t.Fatalf("PUT %s: %d %v", put[0], status, body)
		}
	}
	body := strings.TrimSuffix(apptest.IntegrationBody, "]}") + `,
	 {"name":"Contacts out","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contact.created","mappings":[
	   {"id":"00000001-0000-4000-8000-000000000001","name":"ERP sync","enabled":true,"jsonata_expression":"{\"id\": entity._id, \"name\": entity.full_name, \"number\": entity.customer_number, \"op\": event.operation}",
	    "delivery":{"type":"webhook","webhook_id":"erp-ok"}},
	   {"id":"00000002-0000-4000-8000-000000000002","name":"Broken","enabled":true,"jsonata_expression":"$error(\"boom\")","delivery":{"type":"webhook","webhook_id":"erp-ok"}},
	   {"id":"00000003-0000-4000-8000-000000000003","name":"Off","enabled":false,"jsonata_expression":"{}","delivery":{"type":"webhook","webhook_id":"erp-ok"}}]}},
	 {"name":"Contacts changed","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contact.updated","ack_tracking":"off","mappings":[
	   {"id":"00000004-0000-4000-8000-000000000004","name":"Flaky","enabled":true,"jsonata_expression":"{\"id\": entity._id, \"first\": entity.first_name, \"changed\": $keys(changes)}",
	    "delivery":{"type":"webhook","webhook_id":"flaky-hook","webhook_url":"` + base + `/flaky"}},
	   {"id":"00000005-0000-4000-8000-000000000005","name":"Gone","enabled":true,"jsonata_expression":"{\"id\": entity._id}","delivery":{"type":"webhook","webhook_id":"gone","webhook_url":"` + base + `/gone"}}]}}]}`
	return e.CreateIntegration(body)
}

// Entity changes reach webhooks on the real services: signed payloads with _ack_id, retries of a
// failing receiver, an answer not worth retrying dead-lettered and redelivered, a failing
// mapping that hurts nobody else, acknowledgements, the trigger, outbound status and the v1
// outbound monitoring counting exactly what the receiver saw.
func TestIntegrationOutboundDelivery(t *testing.T) {
	rcv := &receiver{failures: 3, slow: make(chan struct{})}
	stub := stubOn127002(t, rcv.handle)
	e := outboundEnv(t)
	id := outboundIntegration(t, e, stub.URL)

	// A webhook to a blocked literal address is refused when it is saved.
	if status, body := e.Call("PUT", "/v1/webhooks/meta", `{"url":"http://169.254.169.254/latest"}`); status != http.StatusBadRequest {
		t.Fatalf("blocked webhook url: %d %v", status, body)
	}
	if status, body := e.Call("PUT", "/v1/webhooks/literal", `{"url":"https://example.com/x","signing_secret":"plain-secret"}`); status != http.StatusBadRequest {
		t.Fatalf("literal signing secret: %d %v", status, body)
	}

	e.SendOne(id, "customer", `{"customerNumber":"K-1","firstName":"Lena","lastName":"Meyer"}`)
	apptest.WaitFor(t, func() bool { return len(rcv.got("/ok")) >= 1 })
	ok := rcv.got("/ok")[0]
	if !outbound.Verify(webhookSecret, ok.header, ok.body, time.Now(), 5*time.Minute) {
		t.Fatalf("signature does not verify: %v", ok.header)
	}
	if ok.header.Get("X-Tenant") != "t1" || !strings.HasPrefix(ok.header.Get("webhook-id"), "msg_") {
		t.Fatalf("headers: %v", ok.header)
	}
	var got map[string]any
	if err := json.Unmarshal(ok.body, &got); err != nil {
		t.Fatal(err)
	}
	ackID, _ := got["_ack_id"].(string)
	if got["name"] != "Lena Meyer" || got["number"] != "K-1" || got["op"] != "created" || len(ackID) < 30 ||
		got["_event_source"] != outbound.SourceChange || got["_event_version"] == nil {
		t.Fatalf("payload: %s", ok.body)
	}

	// The update goes to the flaky receiver (500 three times, then 200) and to one answering 410.
	e.SendOne(id, "customer", `{"customerNumber":"K-1","firstName":"Lea","lastName":"Meyer"}`)
	apptest.WaitFor(t, func() bool { return len(rcv.got("/flaky")) >= 4 && len(rcv.got("/gone")) >= 1 })
	flaky := rcv.got("/flaky")
	for _, r := range flaky[1:] {
		if r.header.Get("webhook-id") != flaky[0].header.Get("webhook-id") {
			t.Fatalf("a retry changed webhook-id: %q vs %q", r.header.Get("webhook-id"), flaky[0].header.Get("webhook-id"))
		}
	}
	var upd map[string]any
	_ = json.Unmarshal(flaky[3].body, &upd)
	if upd["first"] != "Lea" || fmt.Sprint(upd["changed"]) == "" || upd["_ack_id"] != nil {
		t.Fatalf("update payload (ack tracking off): %s", flaky[3].body)
	}

	// Acknowledgements: no bearer token; a second use and a guessed id are 404.
	if status, body := e.CallAs("", "POST", "/v1/erp/tracking/acknowledgement", `{"ack_id":"`+ackID+`"}`); status != http.StatusOK {
		t.Fatalf("ack: %d %v", status, body)
	}
	for _, id := range []string{ackID, "ack_guessed0000000000000000000000"} {
		if status, body := e.CallAs("", "POST", "/v1/erp/tracking/acknowledgement", `{"ack_id":"`+id+`"}`); status != http.StatusNotFound || body["code"] != "NOT_FOUND" {
			t.Fatalf("ack %s: %d %v", id, status, body)
		}
	}
	if status, _ := e.CallAs("", "POST", "/v1/erp/tracking/acknowledgement", `{}`); status != http.StatusBadRequest {
		t.Fatalf("ack without id: %d", status)
	}

	// Monitoring counts exactly what the receivers saw.
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	var data []any
	apptest.WaitFor(t, func() bool {
		_, page := e.Call("POST", "/v1/integrations/"+id+"/monitoring/outbound-events", `{"from_date":"`+from+`","limit":100}`)
		data, _ = page["data"].([]any)
		return len(data) >= 7 // ok 1 + mapping failure 1 + flaky 3 pending + 1 succeeded + gone 1 failed
	})
	statuses := map[string]int{}
	for _, d := range data {
		row := d.(map[string]any)
		statuses[row["status"].(string)+"/"+row["metadata"].(map[string]any)["code"].(string)]++
	}
	want := map[string]int{"succeeded/WEBHOOK_DELIVERED": 2, "pending/WEBHOOK_RETRYING": 3, "failed/WEBHOOK_FAILED": 1, "failed/MAPPING_EXPRESSION_FAILED": 1}
	if fmt.Sprint(statuses) != fmt.Sprint(want) {
		t.Fatalf("outbound events: %v, want %v", statuses, want)
	}
	_, page := e.Call("POST", "/v1/integrations/"+id+"/monitoring/outbound-events", `{"from_date":"`+from+`","status":"pending","webhook_config_id":"flaky-hook"}`)
	if n := len(page["data"].([]any)); n != 3 {
		t.Fatalf("pending flaky attempts: %d %v", n, page)
	}
	_, stats := e.Call("POST", "/v1/integrations/"+id+"/monitoring/stats", `{"from_date":"`+from+`","outbound_group_by":["status"]}`)
	out := stats["outbound"].(map[string]any)
	if out["success_count"] != 2.0 || out["pending_count"] != 3.0 || out["error_count"] != 2.0 || out["total_events"] != 7.0 {
		t.Fatalf("outbound stats: %v", out)
	}
	_, series := e.Call("POST", "/v1/integrations/"+id+"/monitoring/timeseries", `{"from_date":"`+from+`","interval":"1h","direction":"outbound"}`)
	var delivered, retrying float64
	for _, b := range series["buckets"].([]any) {
		if o, ok := b.(map[string]any)["outbound"].(map[string]any); ok {
			delivered, retrying = delivered+o["success_count"].(float64), retrying+o["pending_count"].(float64)
		}
	}
	if delivered != 2 || retrying != 3 {
		t.Fatalf("outbound time series: %v", series)
	}
	// The confirmation's monitoring row travels on its own (ack service → Kafka → projector), so it may
	// land after the delivery rows counted above.
	var v2 map[string]any
	apptest.WaitFor(t, func() bool {
		_, v2 = e.Call("POST", "/v2/integrations/"+id+"/monitoring/events", `{"from_date":"`+from+`","use_case_type":"outbound","code":"ACK_CONFIRMED"}`)
		rows, _ := v2["data"].([]any)
		return len(rows) >= 1
	})
	if n := len(v2["data"].([]any)); n != 1 {
		t.Fatalf("ACK_CONFIRMED rows: %d %v", n, v2)
	}

	// A dead letter (the 410) is redelivered by id with its webhook-id.
	gone := rcv.got("/gone")
	deliveryID := gone[0].header.Get("webhook-id")
	if status, body := e.Call("POST", "/v1/integrations/"+id+"/outbound/redeliver", `{"delivery_ids":["`+deliveryID+`","msg_nope"]}`); status != http.StatusOK ||
		body["redelivered"] != 1.0 || len(body["not_found"].([]any)) != 1 {
		t.Fatalf("redeliver: %d %v", status, body)
	}
	apptest.WaitFor(t, func() bool { return len(rcv.got("/gone")) >= 2 })
	if again := rcv.got("/gone")[1]; again.header.Get("webhook-id") != deliveryID {
		t.Fatalf("redelivery webhook-id %q, want %q", again.header.Get("webhook-id"), deliveryID)
	}

	// The trigger fires a webhook for an entity synchronously.
	entityID := got["id"].(string)
	status, trig := e.Call("POST", "/v1/erp/trigger", `{"execution_id":"ex-1","org_id":"dev-org","webhook_id":"erp-ok","flow_id":"f","created_at":"2025-05-01T08:30:00Z",
	 "action_id":"a","flow_action_id":"fa","flow_name":"Flow","activity_id":"act","entity_id":"`+entityID+`"}`)
	if status != http.StatusOK || trig["status"] != "succeeded" || trig["status_code"] != "200" || trig["body"].(map[string]any)["received"] != true {
		t.Fatalf("trigger: %d %v", status, trig)
	}
	apptest.WaitFor(t, func() bool {
		_, page := e.Call("POST", "/v1/integrations/"+id+"/monitoring/outbound-events", `{"from_date":"`+from+`","event_name":"automation_flow_target"}`)
		rows, _ := page["data"].([]any)
		return len(rows) == 1 && rows[0].(map[string]any)["status"] == "succeeded"
	})
	if status, trig := e.Call("POST", "/v1/erp/trigger", `{"execution_id":"ex-1","org_id":"other-org","webhook_id":"erp-ok","flow_id":"f","created_at":"2025-05-01T08:30:00Z",
	 "action_id":"a","flow_action_id":"fa","flow_name":"Flow","activity_id":"act","entity_id":"`+entityID+`"}`); status != http.StatusForbidden {
		t.Fatalf("trigger for another org: %d %v", status, trig)
	}

	// Status: both use cases ok; disabling the webhook makes the first a conflict.
	_, st := e.Call("GET", "/v1/integrations/"+id+"/outbound-status", "")
	for _, u := range st["useCases"].([]any) {
		if u.(map[string]any)["status"] != "ok" {
			t.Fatalf("outbound status: %v", st)
		}
	}
	e.Call("PUT", "/v1/webhooks/erp-ok", `{"name":"ERP","url":"`+stub.URL+`/ok","enabled":false}`)
	_, st = e.Call("GET", "/v1/integrations/"+id+"/outbound-status", "")
	var first map[string]any
	for _, u := range st["useCases"].([]any) {
		if u.(map[string]any)["name"] == "Contacts out" {
			first = u.(map[string]any)
		}
	}
	if first["status"] != "conflict" || first["conflicts"].([]any)[0].(map[string]any)["type"] != "all_webhooks_disabled" {
		t.Fatalf("status with the webhook disabled: %v", first)
	}
}

// A webhook that takes long holds only its own lanes: another webhook's delivery of the same
// change arrives while the slow one is still waiting for its answer.
func TestIntegrationSlowWebhookDelaysNoOtherWebhook(t *testing.T) {
	rcv := &receiver{slow: make(chan struct{})}
	stub := stubOn127002(t, rcv.handle)
	e := outboundEnv(t)
	id := outboundIntegration(t, e, stub.URL)
	if status, body := e.Call("POST", "/v1/integrations/"+id+"/use-cases", `{"name":"To slow","type":"outbound","enabled":true,
	  "configuration":{"event_catalog_event":"contact.created","mappings":[{"id":"00000006-0000-4000-8000-000000000006","name":"Slow","enabled":true,
	  "jsonata_expression":"{\"id\": entity._id}","delivery":{"type":"webhook","webhook_id":"erp-slow"}}]}}`); status != http.StatusCreated {
		t.Fatalf("use case: %d %v", status, body)
	}
	defer close(rcv.slow)
	for i := 0; i < 5; i++ {
		e.SendOne(id, "customer", fmt.Sprintf(`{"customerNumber":"S-%d","firstName":"A","lastName":"B"}`, i))
	}
	apptest.WaitFor(t, func() bool { return len(rcv.got("/ok")) >= 5 })
	rcv.mu.Lock()
	held := rcv.slowInFlight
	rcv.mu.Unlock()
	if held == 0 {
		t.Fatal("the slow webhook answered already: the test proves nothing")
	}
}

// An acknowledgement that does not come within the window is an ACK_TIMEOUT warning, and the
// ack id is refused from then on.
func TestIntegrationAckTimeout(t *testing.T) {
	rcv := &receiver{slow: make(chan struct{})}
	stub := stubOn127002(t, rcv.handle)
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.SecretsKey = base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))
		c.Outbound.AckWindow = time.Second
	}
	e.Start()
	id := outboundIntegration(t, e, stub.URL)
	e.SendOne(id, "customer", `{"customerNumber":"T-1","firstName":"Tim","lastName":"Out"}`)
	apptest.WaitFor(t, func() bool { return len(rcv.got("/ok")) >= 1 })
	var got map[string]any
	_ = json.Unmarshal(rcv.got("/ok")[0].body, &got)
	from := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	apptest.WaitFor(t, func() bool {
		_, v2 := e.Call("POST", "/v2/integrations/"+id+"/monitoring/events", `{"from_date":"`+from+`","use_case_type":"outbound","code":"ACK_TIMEOUT"}`)
		rows, _ := v2["data"].([]any)
		return len(rows) == 1 && rows[0].(map[string]any)["level"] == "warning"
	})
	if status, body := e.CallAs("", "POST", "/v1/erp/tracking/acknowledgement", `{"ack_id":"`+got["_ack_id"].(string)+`"}`); status != http.StatusNotFound {
		t.Fatalf("ack after the window: %d %v", status, body)
	}
	_, stats := e.Call("POST", "/v1/integrations/"+id+"/monitoring/stats", `{"from_date":"`+from+`"}`)
	if n := stats["outbound"].(map[string]any)["ack_timeout_count"]; n != 1.0 {
		t.Fatalf("ack_timeout_count %v", n)
	}
}
