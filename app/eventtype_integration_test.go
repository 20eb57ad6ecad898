//go:build integration

package app_test

import (
	"fmt"
	"net/http"
	"testing"
)

// Event types on the real services, counted in ClickHouse: by default CREATE creates (and fails
// for an existing entity), UPDATE updates, DELETE deletes, and an event without a type is an
// UPDATE; with settings.honor_event_type false every event applies the mapping's modes.
func TestIntegrationEventTypesByDefaultAndTurnedOff(t *testing.T) {
	e := newEnv(t)
	e.start()
	useCase := `"use_cases":[{"name":"Customers","slug":"customer","type":"inbound","enabled":true,
	 "configuration":{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
	  {"attribute":"customer_number","field":"customerNumber"},{"attribute":"city","field":"city"}]}]}}]`
	byDefault := e.createIntegration(`{"name":"Default",` + useCase + `}`)
	off := e.createIntegration(`{"name":"Off","settings":{"honor_event_type":false},` + useCase + `}`)
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
			e.sendBatch(id, "types", step)
			sent += uint64(len(step))
			waitFor(t, func() bool {
				return e.scalar("SELECT count() FROM monitoring_events FINAL WHERE integration_id = ?", id) >= sent
			})
		}
	}
	live := func(id string) uint64 {
		return e.scalar("SELECT count() FROM entities FINAL WHERE org_id = 'dev-org' AND deleted = 0 AND visitParamExtractString(unique_identifiers, 'customer_number') LIKE ?", prefix[id]+"%")
	}
	city := func(id, customer string) string {
		var c string
		if err := e.conn.QueryRow(t.Context(), `SELECT visitParamExtractString(attributes, 'city') FROM entities FINAL
			WHERE org_id = 'dev-org' AND visitParamExtractString(unique_identifiers, 'customer_number') = ?`, prefix[id]+customer).Scan(&c); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if got := e.monitoringCodes(byDefault); got["ENTITY_ALREADY_EXISTS"] != 1 || got["ENTITY_DELETED"] != 1 {
		t.Errorf("by default: codes %v, want one ENTITY_ALREADY_EXISTS and one ENTITY_DELETED", got)
	}
	if n := live(byDefault); n != 2 || city(byDefault, "K-1") != "Köln" || city(byDefault, "K-2") != "Mainz" {
		t.Errorf("by default: %d live (want 2: K-3 deleted), K-1 in %q (want Köln: the second CREATE failed), K-2 in %q",
			n, city(byDefault, "K-1"), city(byDefault, "K-2"))
	}
	if got := e.monitoringCodes(off); got["ENTITY_ALREADY_EXISTS"] != 0 || got["ENTITY_DELETED"] != 0 {
		t.Errorf("honor_event_type false: codes %v, want only updates", got)
	}
	if n := live(off); n != 3 || city(off, "K-1") != "Berlin" {
		t.Errorf("honor_event_type false: %d live (want 3), K-1 in %q (want Berlin)", n, city(off, "K-1"))
	}
	if status, _ := e.call("GET", "/v2/integrations/"+off, ""); status != http.StatusOK {
		t.Errorf("integration with the setting: %d", status)
	}
}
