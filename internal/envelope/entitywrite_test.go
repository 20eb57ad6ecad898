package envelope

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestEntityWriteAppendJSONDecodesLikeMarshal(t *testing.T) {
	writes := []EntityWrite{
		{OrgID: "org", EntitySchema: "contact", EntityID: "e-1", Op: OpUpsert, UniqueIdentifiers: json.RawMessage(`{"n":"K-1"}`),
			Attributes: json.RawMessage(`{"name":"Zoë \"Z\" <b>","n":1.5}`), Version: 1_746_088_200_000_000,
			IntegrationID: "int", UseCaseID: "uc", EventID: "evt", CorrelationID: "tab\there\nnew line \\ \u2028 \x01 bad:\xff", WrittenAtMs: -5},
		{OrgID: "o", EntityID: "x", Op: OpPurge},
	}
	for _, w := range writes {
		got := w.AppendJSON(nil)
		if !json.Valid(got) {
			t.Fatalf("invalid JSON: %s", got)
		}
		want, _ := json.Marshal(&w)
		var a, b any
		_ = json.Unmarshal(got, &a)
		_ = json.Unmarshal(want, &b)
		if !reflect.DeepEqual(a, b) {
			t.Errorf("AppendJSON\n %s\njson.Marshal\n %s", got, want)
		}
	}
}

func BenchmarkEntityWriteJSON(b *testing.B) {
	w := EntityWrite{OrgID: "org", EntitySchema: "contact", EntityID: "0b0f6a4e-5d9c-8a3b-9f0e-1c2d3e4f5a6b", Op: OpUpsert,
		UniqueIdentifiers: json.RawMessage(`{"customer_number":"K-1"}`),
		Attributes:        json.RawMessage(`{"customer_number":"K-1","first_name":"Lena","last_name":"Meyer","email":[{"email":"lena@example.com"}]}`),
		Version:           1_746_088_200_000_000, IntegrationID: "int", UseCaseID: "uc", EventID: "evt_01", CorrelationID: "c", WrittenAtMs: 1}
	b.Run("AppendJSON", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = w.AppendJSON(nil)
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, _ = json.Marshal(&w)
		}
	})
}
