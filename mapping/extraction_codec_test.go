package mapping_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/mapping"
)

// Every golden case's extraction survives the trip to another processor instance: decoded, it
// encodes to the same bytes, marshals to the same JSON, and keeps the types of the values the
// apply stage switches on.
func TestExtractionsSurviveEncoding(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.json")
	tried := 0
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var gc goldenCase
		if err := json.Unmarshal(raw, &gc); err != nil {
			t.Fatal(err)
		}
		if gc.Error != nil {
			continue
		}
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			m, err := gc.compile()
			if err != nil {
				t.Fatal(err)
			}
			payload, err := mapping.ParsePayload(gc.Payload, gc.Format)
			if err != nil {
				t.Fatal(err)
			}
			x, err := m.ExtractWithin(context.Background(), payload, &jsonata.Env{Now: goldenNow}, mapping.Limits{})
			if err != nil {
				t.Fatal(err)
			}
			enc, err := mapping.EncodeExtraction(x)
			if err != nil {
				t.Fatal(err)
			}
			back, err := mapping.DecodeExtraction(enc)
			if err != nil {
				t.Fatalf("decode %s: %v", enc, err)
			}
			again, err := mapping.EncodeExtraction(back)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, again) {
				t.Fatalf("decoded extraction encodes otherwise:\n%s\n%s", enc, again)
			}
			want, _ := json.Marshal(x)
			got, _ := json.Marshal(back)
			if !bytes.Equal(want, got) {
				t.Fatalf("decoded extraction marshals otherwise:\n%s\n%s", want, got)
			}
			if a, b := valueTypes(x), valueTypes(back); a != b {
				t.Fatalf("value types differ: %s, decoded %s", a, b)
			}
		})
		tried++
	}
	if tried < 10 {
		t.Fatalf("only %d golden extractions tried", tried)
	}
}

// valueTypes lists the Go types of every entity attribute's value.
func valueTypes(x *mapping.Extraction) string {
	var b strings.Builder
	for _, u := range x.Entities {
		for _, a := range append(append(mapping.Attributes{}, u.UniqueIdentifiers...), u.Attributes...) {
			fmt.Fprintf(&b, "%s:%T ", a.Name, a.Value)
		}
	}
	for _, r := range x.MeterReadings {
		for _, a := range r.Attributes {
			fmt.Fprintf(&b, "%s:%T ", a.Name, a.Value)
		}
	}
	return b.String()
}

// What the codec cannot carry is refused, not dropped.
func TestExtractionEncodingRefusesWhatItCannotCarry(t *testing.T) {
	for _, v := range []any{func() {}, struct{ hidden int }{1}, map[int]string{1: "a"}} {
		x := &mapping.Extraction{Entities: []mapping.EntityUpdate{{EntitySlug: "contact",
			Attributes: mapping.Attributes{{Name: "a", Value: v}}}}}
		if _, err := mapping.EncodeExtraction(x); err == nil {
			t.Errorf("%T encoded", v)
		}
	}
	if _, err := mapping.DecodeExtraction([]byte(`[99,{}]`)); err == nil {
		t.Error("another version decoded")
	}
	if _, err := mapping.DecodeExtraction([]byte(`[1,{"Entities":[{"Nope":1}]}]`)); err == nil {
		t.Error("an unknown field decoded")
	}
}
