package jsonata

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeJSONKeepsOrderAndTypes(t *testing.T) {
	v, err := DecodeJSON([]byte(` {"z":1,"a":[true,false,null,"x\u00e9\ud83d\ude00\n"],"m":{"k":-1.5e3}} `))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := MarshalValue(v)
	if string(b) != `{"z":1,"a":[true,false,null,"xé😀\n"],"m":{"k":-1500}}` {
		t.Fatalf("got %s", b)
	}
	for _, bad := range []string{``, `{`, `{"a"}`, `[1,]`, `01`, `1.`, `"\x01"`, `"\q"`, `tru`, `{} {}`, `"\u12"`} {
		if _, err := DecodeJSON([]byte(bad)); err == nil {
			t.Errorf("%q decoded without error", bad)
		}
	}
	deep := strings.Repeat("[", maxDecodeDepth+2) + strings.Repeat("]", maxDecodeDepth+2)
	if _, err := DecodeJSON([]byte(deep)); err == nil {
		t.Error("absurdly deep JSON decoded")
	}
}

// FuzzDecodeJSON checks the decoder against encoding/json: same acceptance, same values.
func FuzzDecodeJSON(f *testing.F) {
	for _, s := range []string{`{"a":[1,2,{"b":null}]}`, `"\ud800"`, `[1e400]`, `{"a":1,"a":2}`, `-0.0`, `"\xff"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var want any
		werr := json.Unmarshal([]byte(s), &want)
		got, gerr := DecodeJSON([]byte(s))
		if werr != nil {
			if gerr == nil && !strings.Contains(werr.Error(), "number") {
				t.Fatalf("%q: encoding/json rejects (%v), DecodeJSON accepts", s, werr)
			}
			return
		}
		if gerr != nil {
			t.Fatalf("%q: encoding/json accepts, DecodeJSON rejects: %v", s, gerr)
		}
		if !reflect.DeepEqual(ToGo(got), want) {
			t.Fatalf("%q: got %#v, want %#v", s, ToGo(got), want)
		}
	})
}
