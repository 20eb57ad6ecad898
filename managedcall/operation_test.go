package managedcall

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

func payloadOf(t *testing.T, s string) map[string]any {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTargetFillsPathAndQuery(t *testing.T) {
	op, err := compile(json.RawMessage(`{"operation":{"method":"GET","path":"/v1/customers/{{customer.id}}/orders/{{ n }}",
		"query_params":{"q":"{{term}}","fixed":"1"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	u, err := op.target("https://partner.example/api/", payloadOf(t, `{"customer":{"id":"K 1/../x"},"n":42,"term":"a&b=c"}`))
	if err != nil {
		t.Fatal(err)
	}
	if got := u.String(); got != "https://partner.example/api/v1/customers/K%201%2F..%2Fx/orders/42?fixed=1&q=a%26b%3Dc" {
		t.Errorf("target %s", got)
	}
	_, err = op.target("https://partner.example", payloadOf(t, `{"customer":{},"n":1,"term":"x"}`))
	var mp *missingParam
	if !errors.As(err, &mp) || mp.name != "customer.id" {
		t.Errorf("missing customer.id: %v", err)
	}
	// A payload value that looks like a placeholder is not expanded again, and env references
	// are not filled in paths.
	op2, _ := compile(json.RawMessage(`{"operation":{"method":"GET","path":"/{{a}}/{{env.SECRET}}"}}`))
	if _, err := op2.target("https://p.example", payloadOf(t, `{"a":"{{env.SECRET}}"}`)); !errors.As(err, &mp) || mp.name != "env.SECRET" {
		t.Errorf("env in a path: %v, want a missing payload value", err)
	}
	u, _ = op2.target("https://p.example", payloadOf(t, `{"a":"{{env.SECRET}}","env":{"SECRET":"s"}}`))
	if !strings.Contains(u.String(), "%7B%7Benv.SECRET%7D%7D/s") {
		t.Errorf("one-pass fill: %s", u)
	}
}

func TestCompileRefusesBadOperations(t *testing.T) {
	for _, cfg := range []string{`{}`, `{"operation":{"method":"TRACE","path":"/"}}`,
		`{"operation":{"method":"GET","path":"/"},"request_mapping":"{ \"a\": "}`, `not json`} {
		if _, err := compile(json.RawMessage(cfg)); err == nil {
			t.Errorf("%s compiled", cfg)
		}
	}
}
