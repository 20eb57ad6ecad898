package outbound

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// The Standard Webhooks reference vector: a receiver's library must accept what erpstream signs.
func TestSignReproducesTheStandardWebhooksVector(t *testing.T) {
	got := Sign("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0), []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
}

func TestVerifyChecksSignatureAndAge(t *testing.T) {
	secret, body, at := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", []byte(`{"a":1}`), time.Unix(1_700_000_000, 0)
	h := http.Header{}
	setSignature(h, secret, "msg_1", at, body)
	if !Verify(secret, h, body, at.Add(time.Minute), 5*time.Minute) {
		t.Fatal("a fresh signed message does not verify")
	}
	if Verify(secret, h, []byte(`{"a":2}`), at, 5*time.Minute) {
		t.Fatal("a changed body verifies")
	}
	if Verify(secret, h, body, at.Add(10*time.Minute), 5*time.Minute) {
		t.Fatal("a replay older than the tolerance verifies")
	}
	if Verify("whsec_b3RoZXI=", h, body, at, 5*time.Minute) {
		t.Fatal("another secret verifies")
	}
	unsigned := http.Header{}
	setSignature(unsigned, "", "msg_1", at, body)
	if unsigned.Get(HeaderWebhookSignature) != "" || unsigned.Get(HeaderWebhookID) != "msg_1" {
		t.Fatalf("unsigned headers: %v", unsigned)
	}
}

func TestDeliveryIDIsStablePerChangeAndMapping(t *testing.T) {
	a := DeliveryID("org", "uc", "m1", "e1", 7, "evt")
	if a != DeliveryID("org", "uc", "m1", "e1", 7, "evt") || !strings.HasPrefix(a, "msg_") || len(a) != 36 {
		t.Fatalf("unstable or malformed: %s", a)
	}
	for _, other := range []string{DeliveryID("org2", "uc", "m1", "e1", 7, "evt"), DeliveryID("org", "uc", "m2", "e1", 7, "evt"),
		DeliveryID("org", "uc", "m1", "e1", 8, "evt")} {
		if other == a {
			t.Fatal("different deliveries share an id")
		}
	}
}

func TestRetryDelaysFollowTheTopicsWithJitterAndRetryAfter(t *testing.T) {
	delays := kafkax.OutboundRetryDelays
	for n := 1; n <= 8; n++ {
		d, tier := retryDelay(delays, n, 0)
		base := delays[min(n-1, len(delays)-1)]
		if tier != min(n-1, len(delays)-1) || d < base*8/10 || d > base*12/10 {
			t.Fatalf("attempt %d: %v in tier %d (base %v)", n, d, tier, base)
		}
	}
	// Retry-After of 5 minutes after the first attempt: the 10 min topic, at least 5 minutes.
	d, tier := retryDelay(delays, 1, 5*time.Minute)
	if tier != 2 || d < 5*time.Minute {
		t.Fatalf("Retry-After 5m: %v tier %d", d, tier)
	}
	// A Retry-After past the longest delay is capped at it.
	if d, tier := retryDelay(delays, 1, 48*time.Hour); tier != len(delays)-1 || d > delays[len(delays)-1]*12/10 {
		t.Fatalf("Retry-After 48h: %v tier %d", d, tier)
	}
}

func TestRetryAfterHeader(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{"": 0, "30": 30 * time.Second, "-1": 0, "soon": 0,
		now.Add(time.Minute).Format(http.TimeFormat): time.Minute} {
		if got := retryAfter(v, now); got != want {
			t.Errorf("Retry-After %q: %v, want %v", v, got, want)
		}
	}
}

func compiled(t *testing.T, src string) *compiledMapping {
	t.Helper()
	expr, err := jsonata.Default.Compile(src)
	return &compiledMapping{expr: expr, err: err}
}

func TestPayloadAddsTheTrackingFieldsAndRefusesNonObjects(t *testing.T) {
	ch := &change{write: envelope.EntityWrite{OrgID: "o", EntitySchema: "contract", EntityID: "e1", Change: envelope.ChangeCreated,
		Version: 1_700_000_000_000_000, Attributes: json.RawMessage(`{"status":"active"}`), CorrelationID: "c1"},
		entity: StoredEntity{Attributes: json.RawMessage(`{"status":"active","customer_name":"ACME"}`), UniqueIdentifiers: json.RawMessage(`{"contract_number":"C1"}`)}}
	doc, err := input(ch, "ack_x", SourceChange)
	if err != nil {
		t.Fatal(err)
	}
	body, err := payload(context.Background(), compiled(t, `{"id": entity._id, "customer": entity.customer_name, "event": event.name, "changed": $keys(changes)}`), doc, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	_ = json.Unmarshal(body, &got)
	if got["id"] != "e1" || got["customer"] != "ACME" || got["event"] != "contract.created" || got["_ack_id"] != "ack_x" ||
		got["_event_source"] != SourceChange || got["_event_version"] != 1.7e15 || got["changed"] != "status" {
		t.Fatalf("payload: %s", body)
	}
	for src, want := range map[string]string{`nothing.here`: "undefined", `"text"`: "must return an object", `$error("boom")`: "boom"} {
		_, err := payload(context.Background(), compiled(t, src), doc, time.Now())
		if !errors.Is(err, errMapping) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %q", src, err, want)
		}
	}
	// A mapping copying its own _ack_id keeps it.
	body, _ = payload(context.Background(), compiled(t, `{"_ack_id": _ack_id, "x": 1}`), doc, time.Now())
	if !strings.Contains(string(body), `"_ack_id":"ack_x"`) {
		t.Fatalf("copied ack id: %s", body)
	}
}

func TestRedactURLDropsQueryAndCredentials(t *testing.T) {
	if got := redactURL("https://u:p@erp.example.com/hook?token=secret#frag"); got != "https://erp.example.com/hook" {
		t.Fatalf("redacted: %s", got)
	}
}

func TestAckTrackingDefaultsOn(t *testing.T) {
	for raw, want := range map[string]bool{``: true, `"on"`: true, `true`: true, `"off"`: false, `false`: false} {
		c := useCaseConfig{AckTracking: json.RawMessage(raw)}
		if c.ackTracking() != want {
			t.Errorf("ack_tracking %s: %v", raw, !want)
		}
	}
}

// After one of its webhooks saturates, an org's full lanes are deferred at once for a while:
// the dispatcher, which serves every org, waits for that org once, not once per webhook.
func TestAnOrgThatSaturatedIsNotWaitedForAgain(t *testing.T) {
	ds := newDestinations(&Service{})
	now := time.Unix(1_700_000_000, 0)
	if !ds.mayWait("a", now) {
		t.Fatal("a fresh org is not waited for")
	}
	ds.saturated("a", now)
	if ds.mayWait("a", now.Add(time.Second)) || !ds.mayWait("b", now.Add(time.Second)) {
		t.Fatal("saturation of org a changed how b is waited for, or not how a is")
	}
	if !ds.mayWait("a", now.Add(orgWaitPause)) {
		t.Fatal("org a is never waited for again")
	}
}
