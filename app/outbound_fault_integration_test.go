//go:build integration

package app_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
)

// deliveryLog is a receiver that records, per entity id in the payload, the webhook-ids it got.
type deliveryLog struct {
	mu       sync.Mutex
	byEntity map[string][]string
	requests int
	hold     time.Duration
}

func (l *deliveryLog) handle(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID string `json:"id"`
	}
	_ = json.NewDecoder(r.Body).Decode(&body)
	time.Sleep(l.hold)
	l.mu.Lock()
	if l.byEntity == nil {
		l.byEntity = map[string][]string{}
	}
	l.byEntity[body.ID] = append(l.byEntity[body.ID], r.Header.Get("webhook-id"))
	l.requests++
	l.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (l *deliveryLog) counts() (entities, requests int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.byEntity), l.requests
}

// check fails unless every entity's deliveries carry one webhook-id.
func (l *deliveryLog) check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for entity, ids := range l.byEntity {
		for _, id := range ids {
			if id != ids[0] || id == "" {
				t.Fatalf("entity %s delivered with webhook-ids %v", entity, ids)
			}
		}
	}
}

func contactsOut(url string) string {
	return `{"name":"SAP","use_cases":[{"name":"Customers","slug":"customer","type":"inbound","enabled":true,
	 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
	   {"attribute":"customer_number","field":"customerNumber"},{"attribute":"first_name","field":"firstName"}]}]}},
	 {"name":"Out","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contact.created","mappings":[
	   {"id":"00000009-0000-4000-8000-000000000009","name":"ERP","enabled":true,"jsonata_expression":"{\"id\": entity._id, \"n\": entity.customer_number}",
	    "delivery":{"type":"webhook","webhook_id":"erp","webhook_url":"` + url + `"}}]}}]}`
}

// erpstream is SIGKILLed while deliveries are in flight and started again: every change still
// reaches the receiver, and every repeat carries the webhook-id of the first attempt.
func TestIntegrationOutboundKilledMidDeliveryDeliversAtLeastOnce(t *testing.T) {
	rcv := &deliveryLog{hold: 100 * time.Millisecond}
	stub := stubOn127002(t, rcv.handle)
	e := apptest.New(t)
	p := newServeProcess(t, e)
	p.env = append(p.env, "ERPSTREAM_EGRESS_ALLOW_CIDRS=127.0.0.2/32", "ERPSTREAM_OUTBOUND_DESTINATION_CONCURRENCY=2",
		"ERPSTREAM_SECRETS_KEY="+base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")))
	p.start()
	e.URL = "http://" + p.addr
	id := e.CreateIntegration(contactsOut(stub.URL + "/hook"))
	const total = 120
	var events []string
	for i := 0; i < total; i++ {
		events = append(events, apptest.PayloadEvent("customer", fmt.Sprintf(`{"customerNumber":"K-%d","firstName":"A"}`, i)))
	}
	e.Send(id, "kill", events[:total/2])
	e.Send(id, "kill", events[total/2:])
	apptest.WaitFor(t, func() bool { _, n := rcv.counts(); return n >= total/4 })
	_, before := rcv.counts()
	p.kill()
	t.Logf("SIGKILL after %d deliveries", before)
	p.start()
	deadline := time.Now().Add(2 * time.Minute)
	for n, _ := rcv.counts(); n < total; n, _ = rcv.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d entities delivered after the restart", n, total)
		}
		time.Sleep(250 * time.Millisecond)
	}
	rcv.check(t)
	n, requests := rcv.counts()
	t.Logf("%d entities delivered in %d requests (%d repeated after the kill, same webhook-id)", n, requests, requests-n)
	time.Sleep(16 * time.Second) // the killed members' sessions expire before the next test's groups form
}

// The receiver is down for a minute (connections refused) while changes happen: every one arrives
// once it is back (attempt 3), nothing is dead-lettered.
func TestIntegrationOutboundReceiverDownForAMinuteLosesNothing(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: nothing listens on the port
	e := apptest.New(t)
	e.Configure = func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		// The real first delay (10 s); the second 90 s instead of 1 min, so that its ±20% jitter
		// cannot bring a third attempt inside the minute the receiver is down (it would then
		// wait the 10 min of the next delay, longer than this test).
		c.Outbound.RetryDelays = []time.Duration{10 * time.Second, 90 * time.Second, 10 * time.Minute, time.Hour, 4 * time.Hour}
	}
	e.Start()
	id := e.CreateIntegration(contactsOut("http://" + addr + "/hook"))
	const total = 20
	var events []string
	for i := 0; i < total; i++ {
		events = append(events, apptest.PayloadEvent("customer", fmt.Sprintf(`{"customerNumber":"D-%d","firstName":"A"}`, i)))
	}
	e.Send(id, "down", events)
	from := time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)
	// Every first attempt fails while the receiver is away.
	apptest.WaitFor(t, func() bool {
		_, page := e.Call("POST", "/v1/integrations/"+id+"/monitoring/outbound-events", `{"from_date":"`+from+`","status":"pending","limit":100}`)
		return len(page["data"].([]any)) >= total
	})
	time.Sleep(time.Minute)
	rcv := &deliveryLog{}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the receiver's port: %v", err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(rcv.handle))
	srv.Listener = ln
	srv.Start()
	defer srv.Close()
	deadline := time.Now().Add(3 * time.Minute)
	for n, _ := rcv.counts(); n < total; n, _ = rcv.counts() {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d changes delivered after the receiver came back", n, total)
		}
		time.Sleep(500 * time.Millisecond)
	}
	rcv.check(t)
	var out map[string]any
	apptest.WaitFor(t, func() bool {
		_, stats := e.Call("POST", "/v1/integrations/"+id+"/monitoring/stats", `{"from_date":"`+from+`"}`)
		out = stats["outbound"].(map[string]any)
		return out["success_count"] == float64(total)
	})
	if out["error_count"] != 0.0 || out["pending_count"].(float64) < total {
		t.Fatalf("outbound stats after the outage: %v", out)
	}
}
