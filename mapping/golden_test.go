package mapping_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/mapping"
)

// goldenCase is one file of testdata/golden: a configuration (v2, or the v1 simulation's wrapped
// form), a payload, and the simulation answer or the error expected.
type goldenCase struct {
	About         string          `json:"about"`
	Configuration json.RawMessage `json:"configuration"`
	V1            *struct {
		ObjectType           string          `json:"object_type"`
		MappingConfiguration json.RawMessage `json:"mapping_configuration"`
	} `json:"v1"`
	Format   string          `json:"format"`
	Payload  json.RawMessage `json:"payload"`
	Expected json.RawMessage `json:"expected"`
	Error    *struct {
		Code     string `json:"code"`
		Contains string `json:"contains"`
	} `json:"error"`
}

// compile compiles the case's configuration, v2 or the v1 wrapped form.
func (gc *goldenCase) compile() (*mapping.Mapping, error) {
	if gc.V1 != nil {
		return mapping.CompileWrapped(gc.V1.MappingConfiguration, gc.V1.ObjectType, jsonata.Default)
	}
	return mapping.Compile(gc.Configuration, jsonata.Default)
}

// The receive time every golden case maps with ($now()).
var goldenNow = time.Date(2025, 5, 1, 8, 30, 0, 0, time.UTC)

func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.json")
	if len(files) == 0 {
		t.Fatal("no golden cases in testdata/golden")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var gc goldenCase
			if err := json.Unmarshal(raw, &gc); err != nil {
				t.Fatalf("%s: %v", file, err)
			}
			m, err := gc.compile()
			if err != nil {
				t.Fatalf("compile: %v", err)
			}
			payload, err := mapping.ParsePayload(gc.Payload, gc.Format)
			if err != nil {
				t.Fatalf("payload: %v", err)
			}
			sim, err := m.Simulate(context.Background(), payload, goldenNow)
			if gc.Error != nil {
				var me *mapping.Error
				if !errors.As(err, &me) || me.Code != gc.Error.Code || !strings.Contains(me.Error(), gc.Error.Contains) {
					t.Fatalf("got %v (%T), want %s containing %q", err, err, gc.Error.Code, gc.Error.Contains)
				}
				return
			}
			if err != nil {
				t.Fatalf("simulate: %v", err)
			}
			got, _ := json.Marshal(sim)
			var gotV, wantV any
			_ = json.Unmarshal(got, &gotV)
			if err := json.Unmarshal(gc.Expected, &wantV); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(gotV, wantV) {
				want, _ := json.Marshal(wantV)
				t.Errorf("%s\n got %s\nwant %s", gc.About, got, want)
			}
		})
	}
}
