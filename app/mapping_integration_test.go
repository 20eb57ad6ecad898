//go:build integration

package app_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// The apply stage's lookups on the real services: a contact found
// by email although its own mapping identifies it by customer number; an ERP meter reading that
// updates the ECP reading of its Berlin day in place, then a mirror that purges the rest; an order
// referring to the contact's address by _id; a contract priced from the catalog.
func TestIntegrationLookupsReadingsReferencesAndPricing(t *testing.T) {
	e := newEnv(t)
	e.start()
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
	id := e.createIntegration(body)
	n := 0.0
	send := func(slug, payload string) {
		t.Helper()
		e.sendOne(id, slug, payload)
		n++
		e.waitStats(id, n)
	}
	attributes := func(schema, where string, args ...any) map[string]any {
		t.Helper()
		var raw string
		var attrs map[string]any
		waitFor(t, func() bool {
			err := e.conn.QueryRow(context.Background(), `SELECT attributes FROM entities FINAL WHERE entity_schema = '`+schema+`' AND `+where, args...).Scan(&raw)
			return err == nil && json.Unmarshal([]byte(raw), &attrs) == nil
		})
		return attrs
	}

	send("contacts", `{"kdnr":"K-1","mail":"ann@example.com","str":"Ring 5","ort":"Köln"}`)
	send("by-email", `{"mail":"ann@example.com","vorname":"Ann"}`)
	waitFor(t, func() bool {
		return attributes("contact", "deleted = 0")["first_name"] == "Ann"
	})
	if c := e.scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'"); c != 1 {
		t.Errorf("%d contacts, want one (found by email)", c)
	}
	// Found by email, it keeps the customer number it was created with among its unique identifiers.
	if c := e.scalar(`SELECT count() FROM entities FINAL WHERE entity_schema = 'contact'
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
		return e.scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'meter_reading' AND deleted = 0")
	}
	waitFor(t, func() bool { return live() == 3 })
	updated := attributes("meter_reading", "visitParamExtractString(unique_identifiers, 'external_id') = 'Z-1-2025-03-10'")
	if updated["value"] != 3.0 || updated["source"] != "ERP" || updated["timestamp"] != "2025-03-10T00:00:00.000Z" {
		t.Errorf("the ECP reading of 10 March was not updated in place: %v", updated)
	}
	send("mirror", `{"zaehler":"Z-1","ablesungen":[{"id":"Z-1-2025-03-10","ts":"2025-03-10","v":3,"quelle":"ERP"}]}`)
	waitFor(t, func() bool { return live() == 2 }) // 15 March purged; ecp-2 is ECP, out of the mirror's scope
	if c := e.scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'meter_reading' AND deleted = 1 AND attributes = '{}'"); c != 1 {
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
	waitFor(t, func() bool {
		return e.scalar("SELECT count() FROM entities FINAL WHERE entity_schema = 'tariff' AND deleted = 1") == 1
	})
	if c := e.scalar(`SELECT count() FROM entities FINAL WHERE entity_schema = 'tariff' AND deleted = 1
		AND visitParamExtractString(unique_identifiers, 'code') = 'T1'`); c != 1 {
		t.Error("the pruned tariff is not T1")
	}
}
