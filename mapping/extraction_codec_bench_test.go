package mapping_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/mapping"
)

// BenchmarkExtractionCodec: what a spread org's event costs to carry its extraction to its org's
// partition (a five-field contact).
func BenchmarkExtractionCodec(b *testing.B) {
	m, err := mapping.Compile(json.RawMessage(`{"entities":[{"entity_schema":"contact","unique_ids":["customer_number"],"fields":[
		{"attribute":"customer_number","field":"customerNumber"},{"attribute":"first_name","field":"firstName"},
		{"attribute":"last_name","field":"lastName"},{"attribute":"email","field":"email","_type":"email"}]}]}`), jsonata.Default)
	if err != nil {
		b.Fatal(err)
	}
	payload, _ := mapping.ParsePayload(json.RawMessage(`{"customerNumber":"K-1","firstName":"F1","lastName":"L","email":"k1@example.com"}`), "json")
	x, err := m.ExtractWithin(context.Background(), payload, &jsonata.Env{Now: time.Now()}, mapping.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	enc, _ := mapping.EncodeExtraction(x)
	b.Run("extract", func(b *testing.B) {
		for b.Loop() {
			_, _ = m.ExtractWithin(context.Background(), payload, &jsonata.Env{Now: time.Now()}, mapping.Limits{})
		}
	})
	b.Run("encode", func(b *testing.B) {
		for b.Loop() {
			_, _ = mapping.EncodeExtraction(x)
		}
	})
	b.Run("decode", func(b *testing.B) {
		for b.Loop() {
			_, _ = mapping.DecodeExtraction(enc)
		}
	})
	b.Logf("%d bytes: %s", len(enc), enc)
}
