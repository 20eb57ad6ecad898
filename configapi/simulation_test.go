package configapi_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/configapi"
)

func TestMappingSimulation(t *testing.T) {
	c, _ := setup(t)
	cfg := `{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
		{"attribute":"customer_number","field":"kdnr"},{"attribute":"name","jsonataExpression":"$uppercase(name)"}]}]}`
	status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "ro",
		`{"event_configuration":`+cfg+`,"format":"json","payload":"{\"kdnr\":\"K-1\",\"name\":\"lena\"}"}`)
	if status != http.StatusOK {
		t.Fatalf("v2: %d %v", status, body)
	}
	upd := body["entity_updates"].([]any)[0].(map[string]any)
	if upd["entity_slug"] != "contact" || upd["attributes"].(map[string]any)["name"] != "LENA" ||
		upd["unique_identifiers"].(map[string]any)["customer_number"] != "K-1" {
		t.Errorf("v2 update %v", upd)
	}
	// An object payload works as well as a string; the v1 route takes the wrapped forms.
	status, body = c.do("POST", "/v1/erp/updates/mapping_simulation", "ro",
		`{"mapping_configuration":{"version":"2.0","mapping":{"events":{"customer":`+cfg+`}}},"object_type":"customer","format":"json","payload":{"kdnr":"K-2","name":"x"}}`)
	if status != http.StatusOK || len(body["entity_updates"].([]any)) != 1 {
		t.Fatalf("v1 wrapped v2: %d %v", status, body)
	}

	cases := []struct {
		name, path, body string
		status           int
		code, mentions   string
	}{
		{"no configuration", "/v2/erp/updates/mapping_simulation", `{"format":"json","payload":"{}"}`, 400, "VALIDATION_ERROR", "event_configuration"},
		{"bad format", "/v2/erp/updates/mapping_simulation", `{"event_configuration":` + cfg + `,"format":"csv","payload":"{}"}`, 400, "VALIDATION_ERROR", "format"},
		{"expression does not compile", "/v2/erp/updates/mapping_simulation",
			`{"event_configuration":{"entities":[{"entity_schema":"c","unique_ids":["a"],"fields":[{"attribute":"a","jsonataExpression":"$x("}]}]},"payload":"{}"}`,
			422, "INVALID_CONFIGURATION", "entities[0].fields[0].jsonataExpression"},
		{"payload not JSON", "/v2/erp/updates/mapping_simulation", `{"event_configuration":` + cfg + `,"format":"json","payload":"{nope"}`, 422, "MALFORMED_PAYLOAD", "not valid JSON"},
		{"missing unique id", "/v2/erp/updates/mapping_simulation", `{"event_configuration":` + cfg + `,"payload":{"name":"x"}}`, 422, "MISSING_UNIQUE_IDENTIFIERS", "customer_number"},
		{"unknown object type", "/v1/erp/updates/mapping_simulation",
			`{"mapping_configuration":{"version":"2.0","mapping":{"events":{"customer":` + cfg + `}}},"object_type":"order","payload":"{}"}`, 422, "INVALID_CONFIGURATION", "customer"},
		{"unknown version", "/v1/erp/updates/mapping_simulation",
			`{"mapping_configuration":{"version":"3.0","mapping":{}},"object_type":"x","payload":"{}"}`, 422, "INVALID_CONFIGURATION", "version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := c.do("POST", tc.path, "ro", tc.body)
			if status != tc.status || body["code"] != tc.code || !strings.Contains(body["message"].(string), tc.mentions) {
				t.Errorf("got %d %v, want %d %s mentioning %q", status, body, tc.status, tc.code, tc.mentions)
			}
		})
	}
}

// The simulation shows the mode an event's type selects, as the pipeline applies it.
func TestMappingSimulationShowsTheEventTypesMode(t *testing.T) {
	c, _ := setup(t)
	cfg := `{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[{"attribute":"customer_number","field":"kdnr"}]}]}`
	for eventType, mode := range map[string]string{"": "upsert", "UPDATE": "upsert", "CREATE": "create", "DELETE": "delete"} {
		status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "ro",
			`{"event_configuration":`+cfg+`,"format":"json","event_type":"`+eventType+`","payload":{"kdnr":"K-1"}}`)
		if status != http.StatusOK {
			t.Fatalf("%q: %d %v", eventType, status, body)
		}
		if got := body["entity_updates"].([]any)[0].(map[string]any)["mode"]; got != mode {
			t.Errorf("event_type %q: mode %v, want %s", eventType, got, mode)
		}
	}
	if status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "ro",
		`{"event_configuration":`+cfg+`,"event_type":"MERGE","payload":{"kdnr":"K-1"}}`); status != http.StatusBadRequest || body["code"] != "VALIDATION_ERROR" {
		t.Errorf("unknown event_type: %d %v", status, body)
	}
}

// Simulations are bounded in time (422 MAPPING_TIMEOUT at SimulationTimeout) and in number: a
// third concurrent simulation of one org is 429, while another org's still runs.
func TestSimulationsAreBoundedInTimeAndNumber(t *testing.T) {
	old := configapi.SimulationTimeout
	configapi.SimulationTimeout = 1500 * time.Millisecond
	defer func() { configapi.SimulationTimeout = old }()
	c, _ := setup(t)
	slowCfg := `{"entities":[{"entity_schema":"contact","unique_ids":["no"],"jsonataExpression":"items","fields":[{"attribute":"no","field":"no"},
		{"attribute":"flag","jsonataExpression":"$contains($$.s, /a.*a.*a.*z/) ? 'y' : 'n'"}]}]}`
	// Many cheap matches rather than few dear ones: on a loaded machine one backtracking match of
	// a long input can reach the regex's own per-match timeout (another code) before the deadline.
	items := strings.TrimSuffix(strings.Repeat(`{"no":"K"},`, 6000), ",")
	slow := `{"event_configuration":` + slowCfg + `,"payload":{"s":"` + strings.Repeat("a", 25) + `","items":[` + items + `]}}`
	fast := `{"event_configuration":{"entities":[{"entity_schema":"contact","unique_ids":["no"],"fields":[{"attribute":"no","field":"no"}]}]},"payload":{"no":"K"}}`

	type answer struct {
		status int
		body   map[string]any
	}
	answers := make(chan answer, 2)
	for range 2 {
		go func() {
			status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "a", slow)
			answers <- answer{status, body}
		}()
	}
	// Once both slow ones hold their slots (they run 1.5 s), a third of org A is refused.
	busy := false
	for deadline := time.Now().Add(time.Second); !busy && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "a", fast)
		busy = status == http.StatusTooManyRequests && body["code"] == "SIMULATIONS_BUSY"
	}
	if !busy {
		t.Error("a third concurrent simulation of org A was never refused with 429 SIMULATIONS_BUSY")
	}
	if status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "b", fast); status != http.StatusOK {
		t.Errorf("org B while A's run: %d %v", status, body)
	}
	for range 2 {
		a := <-answers
		if a.status != http.StatusUnprocessableEntity || a.body["code"] != "MAPPING_TIMEOUT" {
			t.Errorf("slow simulation: %d %v, want 422 MAPPING_TIMEOUT", a.status, a.body)
		}
	}
	if status, body := c.do("POST", "/v2/erp/updates/mapping_simulation", "a", fast); status != http.StatusOK {
		t.Errorf("after the slow ones ended: %d %v", status, body)
	}
}
