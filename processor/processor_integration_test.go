//go:build integration

// Integration tests of the processor on the real services: relations, placeholders and prune
// scopes, lookups, readings and pricing, event types. Several instances: app/scaleout_integration_test.go.
package processor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/app/apptest"
)

// Relations on the real services: a contract relates to a contact no event has written yet (a
// placeholder is stored), the contact arrives and replaces the placeholder, and a second contract
// event appends a second contact to the stored relation.
func TestIntegrationRelationsAndPlaceholders(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	body := `{"name":"SAP","use_cases":[
	 {"name":"Contracts","slug":"contract","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contract",
	  "unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"nr"},
	  {"attribute":"customers","relations":{"operation":"_append","items":[{"entity_schema":"contact","_tags":["KUNDE"],
	    "unique_ids":[{"attribute":"customer_number","field":"kunde"}]}]}}]}]}},
	 {"name":"Customers","slug":"customer","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contact",
	  "unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"nr"},{"attribute":"name","field":"name"}]}]}}]}`
	id := e.CreateIntegration(body)
	send := func(slug, payload string) { e.SendOne(id, slug, payload) }
	contact := func(no string) (attrs map[string]any, n uint64) {
		var raw string
		_ = e.Conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = 'contact'
			AND visitParamExtractString(unique_identifiers, 'customer_number') = ?`, no).Scan(&raw)
		_ = json.Unmarshal([]byte(raw), &attrs)
		n = e.Scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'contact' AND deleted = 0")
		return attrs, n
	}
	relatedIDs := func() []string {
		var raw string
		if err := e.Conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = 'contract'`).Scan(&raw); err != nil {
			t.Fatal(err)
		}
		var attrs struct {
			Customers struct {
				Relation []struct {
					EntityID string `json:"entity_id"`
				} `json:"$relation"`
			} `json:"customers"`
		}
		_ = json.Unmarshal([]byte(raw), &attrs)
		var out []string
		for _, r := range attrs.Customers.Relation {
			out = append(out, r.EntityID)
		}
		return out
	}

	send("contract", `{"nr":"V-1","kunde":"K-9"}`)
	e.WaitStats(id, 1)
	apptest.WaitFor(t, func() bool { a, _ := contact("K-9"); return a["customer_number"] == "K-9" })
	if a, _ := contact("K-9"); a["name"] != nil {
		t.Errorf("placeholder holds more than the unique id: %v", a)
	}
	send("customer", `{"nr":"K-9","name":"Kim"}`)
	apptest.WaitFor(t, func() bool { a, _ := contact("K-9"); return a["name"] == "Kim" })
	if _, n := contact("K-9"); n != 1 {
		t.Errorf("%d contacts, want the one (placeholder replaced)", n)
	}
	send("contract", `{"nr":"V-1","kunde":"K-10"}`)
	apptest.WaitFor(t, func() bool { return len(relatedIDs()) == 2 })
	if ids := relatedIDs(); ids[0] == ids[1] {
		t.Errorf("related ids %v", ids)
	}
}

// Prune scope on the real services: pruned billing events are marked deleted
// in ClickHouse and keep their unique ids and attributes.
func TestIntegrationPruneScope(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	raw, err := os.ReadFile("../mapping/testdata/golden/ex5-prune-scope.json")
	if err != nil {
		t.Fatal(err)
	}
	var gc struct {
		Configuration json.RawMessage `json:"configuration"`
	}
	if err := json.Unmarshal(raw, &gc); err != nil {
		t.Fatal(err)
	}
	body := `{"name":"Billing","use_cases":[
	 {"name":"Accounts","slug":"accounts","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"billing_account",
	  "unique_ids":["billing_account_number"],"fields":[{"attribute":"billing_account_number","field":"nr"}]}]}},
	 {"name":"Events","slug":"events","type":"inbound","enabled":true,"configuration":` + string(gc.Configuration) + `}]}`
	id := e.CreateIntegration(body)
	send := func(slug, payload string, n float64) {
		e.SendOne(id, slug, payload)
		e.WaitStats(id, n)
	}
	send("accounts", `{"nr":"BA-9"}`, 1)
	send("events", `{"konto":"BA-9","events":[{"id":"E-1"},{"id":"E-2"},{"id":"E-3"}]}`, 2)
	send("events", `{"konto":"BA-9","events":[{"id":"E-2"},{"id":"E-4"}]}`, 3)
	type row struct {
		uid     string
		deleted uint8
	}
	var rows []row
	apptest.WaitFor(t, func() bool {
		r, err := e.Conn.Query(context.Background(), `SELECT visitParamExtractString(unique_identifiers, 'external_id') AS uid, deleted
			FROM entities FINAL WHERE entity_schema = 'billing_event' ORDER BY uid`) // 18.16 has no positional ORDER BY
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		rows = nil
		for r.Next() {
			var x row
			_ = r.Scan(&x.uid, &x.deleted)
			rows = append(rows, x)
		}
		return len(rows) == 4 && rows[0].deleted == 1
	})
	want := []row{{"E-1", 1}, {"E-2", 0}, {"E-3", 1}, {"E-4", 0}}
	for i, w := range want {
		if rows[i] != w {
			t.Errorf("billing events %v, want %v", rows, want)
			break
		}
	}
}

// The apply stage's lookups on the real services: a contact found
// by email although its own mapping identifies it by customer number; an ERP meter reading that
// updates the ECP reading of its Berlin day in place, then a mirror that purges the rest; an order
// referring to the contact's address by _id; a contract priced from the catalog.
func TestIntegrationLookupsReadingsReferencesAndPricing(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	uc := func(slug, cfg string) string {
		return `{"name":"` + slug + `","slug":"` + slug + `","type":"inbound","enabled":true,"configuration":` + cfg + `}`
	}
	readings := func(matching, mode, extra string) string {
		return `{"meter_readings":[{"jsonataExpression":"ablesungen","reading_matching":"` + matching + `","mode":"` + mode + `"` + extra + `,
			"meter":{"unique_ids":[{"attribute":"meter_number","field":"$$.zaehler"}]},
			"meter_counter":{"unique_ids":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]},
			"fields":[{"attribute":"external_id","field":"id"},{"attribute":"timestamp","field":"ts"},
				{"attribute":"value","field":"v"},{"attribute":"source","field":"quelle"}]}]}`
	}
	body := `{"name":"SAP","use_cases":[` + uc("contacts", `{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
			{"attribute":"customer_number","field":"kdnr"},{"attribute":"email","field":"mail","_type":"email"},
			{"attribute":"address","jsonataExpression":"[{\"street\": str, \"city\": ort}]"}]}]}`) + `,` +
		uc("by-email", `{"entities":[{"entity_schema":"contact","unique_ids":["email"],"fields":[
			{"attribute":"email","field":"mail","_type":"email"},{"attribute":"first_name","field":"vorname"}]}]}`) + `,` +
		uc("orders", `{"entities":[{"entity_schema":"order","unique_ids":["order_number"],"fields":[{"attribute":"order_number","field":"nr"},
			{"attribute":"billing_address","relation_refs":{"operation":"_set","items":[{"entity_schema":"contact",
				"unique_ids":[{"attribute":"email","field":"mail"}],"path":"address",
				"value":{"attribute":"address","jsonataExpression":"{\"street\": str, \"city\": ort}"}}]}}]}]}`) + `,` +
		uc("meters", `{"entities":[{"entity_schema":"meter","unique_ids":["meter_number"],"fields":[{"attribute":"meter_number","field":"nr"}]},
			{"entity_schema":"meter_counter","unique_ids":["obis_number"],"fields":[{"attribute":"obis_number","constant":"1-0:1.8.0"}]}]}`) + `,` +
		uc("ecp", readings("external_id", "upsert", "")) + `,` +
		uc("erp", readings("strict-date", "upsert", "")) + `,` +
		uc("mirror", readings("external_id", "upsert-prune-scope", `,"scope":{"source":"ERP"}`)) + `,` +
		uc("catalog", `{"entities":[{"entity_schema":"price","unique_ids":["price_number"],"fields":[{"attribute":"price_number","field":"preis"},
				{"attribute":"unit_amount","field":"cent"},{"attribute":"tax_rate","constant":19}]},
			{"entity_schema":"product","unique_ids":["product_number"],"fields":[{"attribute":"product_number","field":"produkt"},
				{"attribute":"price_options","relations":{"operation":"_set","items":[{"entity_schema":"price","unique_ids":[{"attribute":"price_number","field":"preis"}]}]}}]}]}`) + `,` +
		uc("tariffs", `{"entities":[{"entity_schema":"tariff","unique_ids":["code"],"mode":"upsert-prune-scope-delete",
			"jsonataExpression":"tarife","scope":{"scope_mode":"query","query":[{"attribute":"supplier","field":"anbieter"}]},
			"fields":[{"attribute":"code","field":"code"},{"attribute":"supplier","field":"$$.anbieter"}]}]}`) + `,` +
		uc("contracts", `{"entities":[{"entity_schema":"contract","unique_ids":["contract_number"],"fields":[{"attribute":"contract_number","field":"nr"},
			{"attribute":"invoice","file_proxy_url":{"use_case_slug":"invoices","params":{"no":{"field":"nr"}}}}],
			"pricing":{"jsonataExpression":"positionen","items":[{"product":{"unique_ids":[{"attribute":"product_number","field":"sku"}]},
				"quantity":{"field":"menge"}}]}}]}`) + `]}`
	id := e.CreateIntegration(body)
	n := 0.0
	send := func(slug, payload string) {
		t.Helper()
		e.SendOne(id, slug, payload)
		n++
		e.WaitStats(id, n)
	}
	attributes := func(schema, where string, args ...any) map[string]any {
		t.Helper()
		var raw string
		var attrs map[string]any
		apptest.WaitFor(t, func() bool {
			err := e.Conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = '`+schema+`' AND `+where, args...).Scan(&raw)
			return err == nil && json.Unmarshal([]byte(raw), &attrs) == nil
		})
		return attrs
	}

	send("contacts", `{"kdnr":"K-1","mail":"ann@example.com","str":"Ring 5","ort":"Köln"}`)
	send("by-email", `{"mail":"ann@example.com","vorname":"Ann"}`)
	apptest.WaitFor(t, func() bool {
		return attributes("contact", "deleted = 0")["first_name"] == "Ann"
	})
	if c := e.Scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'"); c != 1 {
		t.Errorf("%d contacts, want one (found by email)", c)
	}
	// Found by email, it keeps the customer number it was created with among its unique identifiers.
	if c := e.Scalar(`SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'
		AND visitParamExtractString(unique_identifiers, 'customer_number') = 'K-1'
		AND visitParamExtractString(unique_identifiers, 'email') = 'ann@example.com'`); c != 1 {
		t.Errorf("the contact's unique identifiers lack the customer number or the email")
	}

	send("orders", `{"nr":"A-1","mail":"ann@example.com","str":"Ring 5","ort":"Köln"}`)
	contact := attributes("contact", "deleted = 0")
	order := attributes("order", "1")
	addresses, _ := contact["address"].([]any)
	refs, _ := order["billing_address"].(map[string]any)["$relation_ref"].([]any)
	if len(addresses) != 1 || len(refs) != 1 {
		t.Fatalf("contact addresses %v, order references %v", contact["address"], order["billing_address"])
	}
	if addrID := addresses[0].(map[string]any)["_id"]; addrID == nil || refs[0].(map[string]any)["_id"] != addrID {
		t.Errorf("the order refers to %v, the contact's address is %v", refs[0], addresses[0])
	}

	send("meters", `{"nr":"Z-1"}`)
	send("ecp", `{"zaehler":"Z-1","ablesungen":[{"id":"ecp-1","ts":"2025-03-10T22:30:00Z","v":1,"quelle":"ECP"},
		{"id":"ecp-2","ts":"2025-03-11T08:00:00Z","v":2,"quelle":"ECP"}]}`)
	send("erp", `{"zaehler":"Z-1","ablesungen":[{"id":"Z-1-2025-03-10","ts":"2025-03-10","v":3,"quelle":"ERP"}]}`)
	send("erp", `{"zaehler":"Z-1","ablesungen":[{"id":"Z-1-2025-03-15","ts":"2025-03-15","v":4,"quelle":"ERP"}]}`)
	live := func() uint64 {
		return e.Scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'meter_reading' AND deleted = 0")
	}
	apptest.WaitFor(t, func() bool { return live() == 3 })
	updated := attributes("meter_reading", "visitParamExtractString(unique_identifiers, 'external_id') = 'Z-1-2025-03-10'")
	if updated["value"] != 3.0 || updated["source"] != "ERP" || updated["timestamp"] != "2025-03-10T00:00:00.000Z" {
		t.Errorf("the ECP reading of 10 March was not updated in place: %v", updated)
	}
	send("mirror", `{"zaehler":"Z-1","ablesungen":[{"id":"Z-1-2025-03-10","ts":"2025-03-10","v":3,"quelle":"ERP"}]}`)
	apptest.WaitFor(t, func() bool { return live() == 2 }) // 15 March purged; ecp-2 is ECP, out of the mirror's scope
	if c := e.Scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'meter_reading' AND deleted = 1 AND attributes = '{}'"); c != 1 {
		t.Errorf("%d purged readings (deleted, attributes dropped), want 1", c)
	}

	send("catalog", `{"preis":"PR-1","cent":1000,"produkt":"P-1"}`)
	send("contracts", `{"nr":"V-1","positionen":[{"sku":"P-1","menge":3}]}`)
	contract := attributes("contract", "1")
	if contract["amount_subtotal"] != 3000.0 || contract["amount_total"] != 3570.0 || contract["currency"] != "EUR" {
		t.Errorf("contract priced %v, want 3 x 10.00 + 19 %% = 35.70 EUR", contract)
	}
	if u, _ := contract["invoice"].(string); !strings.HasSuffix(u, "/download?orgId=dev-org&integrationId="+id+"&useCaseSlug=invoices&no=V-1") {
		t.Errorf("contract invoice URL %q", contract["invoice"])
	}

	// A query scope: the tariffs of supplier P1 mirror the list; P2's are out of scope.
	send("tariffs", `{"anbieter":"P1","tarife":[{"code":"T1"},{"code":"T2"}]}`)
	send("tariffs", `{"anbieter":"P2","tarife":[{"code":"T9"}]}`)
	send("tariffs", `{"anbieter":"P1","tarife":[{"code":"T2"}]}`)
	apptest.WaitFor(t, func() bool {
		return e.Scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'tariff' AND deleted = 1") == 1
	})
	if c := e.Scalar(`SELECT count() FROM entities FINAL WHERE entity_schema = 'tariff' AND deleted = 1
		AND visitParamExtractString(unique_identifiers, 'code') = 'T1'`); c != 1 {
		t.Error("the pruned tariff is not T1")
	}
}

// Event types on the real services, counted in ClickHouse: by default CREATE creates (and fails
// for an existing entity), UPDATE updates, DELETE deletes, and an event without a type is an
// UPDATE; with settings.honor_event_type false every event applies the mapping's modes.
func TestIntegrationEventTypesByDefaultAndTurnedOff(t *testing.T) {
	e := apptest.New(t)
	e.Start()
	useCase := `"use_cases":[{"name":"Customers","slug":"customer","type":"inbound","enabled":true,
	 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
	  {"attribute":"customer_number","field":"customerNumber"},{"attribute":"city","field":"city"}]}]}}]`
	byDefault := e.CreateIntegration(`{"name":"Default",` + useCase + `}`)
	off := e.CreateIntegration(`{"name":"Off","settings":{"honor_event_type":false},` + useCase + `}`)
	evOf := func(eventType, customer, city string) string {
		typ := ""
		if eventType != "" {
			typ = `"event_type":"` + eventType + `",`
		}
		return fmt.Sprintf(`{%s"use_case_slug":"customer","timestamp":"2025-05-01T08:30:00Z","payload":{"customerNumber":%q,"city":%q}}`, typ, customer, city)
	}
	// Entities belong to the org, not the integration: each integration gets its own customers.
	prefix := map[string]string{byDefault: "D", off: "O"}
	ev := func(id, eventType, customer, city string) string { return evOf(eventType, prefix[id]+customer, city) }
	for _, id := range []string{byDefault, off} {
		// One request per step, each mapped before the next is sent, so the steps apply in order.
		sent := uint64(0)
		for _, step := range [][]string{
			{ev(id, "CREATE", "K-1", "Köln"), ev(id, "CREATE", "K-2", "Bonn"), ev(id, "", "K-3", "Essen")},
			{ev(id, "CREATE", "K-1", "Berlin"), ev(id, "UPDATE", "K-2", "Mainz")},
			{ev(id, "DELETE", "K-3", "Essen")},
		} {
			e.SendBatch(id, "types", step)
			sent += uint64(len(step))
			apptest.WaitFor(t, func() bool {
				return e.Scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ?", id) >= sent
			})
		}
	}
	live := func(id string) uint64 {
		return e.Scalar("SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND deleted = 0 AND visitParamExtractString(unique_identifiers, 'customer_number') LIKE ?", prefix[id]+"%")
	}
	city := func(id, customer string) string {
		var c string
		if err := e.Conn.QueryRow(t.Context(), `SELECT visitParamExtractString(attributes, 'city') FROM entities FINAL
			WHERE org_id = 'dev-org' AND visitParamExtractString(unique_identifiers, 'customer_number') = ?`, prefix[id]+customer).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := e.MonitoringCodes(byDefault); got["ENTITY_ALREADY_EXISTS"] != 1 || got["ENTITY_DELETED"] != 1 {
		t.Errorf("by default: codes %v, want one ENTITY_ALREADY_EXISTS and one ENTITY_DELETED", got)
	}
	if n := live(byDefault); n != 2 || city(byDefault, "K-1") != "Köln" || city(byDefault, "K-2") != "Mainz" {
		t.Errorf("by default: %d live (want 2: K-3 deleted), K-1 in %q (want Köln: the second CREATE failed), K-2 in %q",
			n, city(byDefault, "K-1"), city(byDefault, "K-2"))
	}
	if got := e.MonitoringCodes(off); got["ENTITY_ALREADY_EXISTS"] != 0 || got["ENTITY_DELETED"] != 0 {
		t.Errorf("honor_event_type false: codes %v, want only updates", got)
	}
	if n := live(off); n != 3 || city(off, "K-1") != "Berlin" {
		t.Errorf("honor_event_type false: %d live (want 3), K-1 in %q (want Berlin)", n, city(off, "K-1"))
	}
	if status, _ := e.Call("GET", "/v2/integrations/"+off, ""); status != http.StatusOK {
		t.Errorf("integration with the setting: %d", status)
	}
}
