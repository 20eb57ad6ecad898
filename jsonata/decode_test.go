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

// Objects and arrays nested in each other, in every order, keep their members and key order
// (members are gathered on one stack while their parents are still open).
func TestDecodeJSONNestsObjectsAndArrays(t *testing.T) {
	for _, s := range []string{
		`[1,{"a":[2,{"b":[3,4],"c":{}},[]],"d":5},[{"e":[{"f":6}]},7],8]`,
		`{"z":[{"y":1,"x":[{"w":2},3]},{"v":[]}],"u":{"t":[4,[5,[6]]],"s":"r"},"q":[]}`,
		`[[[[{"a":1}]]],{"b":[[{"c":[{"d":{}}]}]]}]`,
		`{"k0":0,"k1":1,"k2":2,"k3":3,"k4":4,"k5":5,"k6":6,"k7":7,"k8":8,"k9":9,"k10":10,"k11":11,"k12":[{"k13":13}],"k14":14}`,
	} {
		v, err := DecodeJSON([]byte(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if b, _ := MarshalValue(v); string(b) != s {
			t.Errorf("decoded and encoded again:\n%s\nwant\n%s", b, s)
		}
	}
	// A repeated key keeps its first position and its last value, at every depth.
	v, err := DecodeJSON([]byte(`[{"a":1,"b":[{"x":1,"y":2,"x":3}],"a":2}]`))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := MarshalValue(v); string(b) != `[{"a":2,"b":[{"x":3,"y":2}]}]` {
		t.Errorf("repeated keys: %s", b)
	}
}

func BenchmarkDecodeJSONPayload(b *testing.B) {
	payload := []byte(`{"customerNumber":"K-10042","firstName":"Anna","lastName":"Meyer","email":"anna.meyer@example.com",` +
		`"phone":"+49 221 1234567","address":{"street":"Hauptstraße 1","zip":"50667","city":"Köln","country":"DE"},` +
		`"contracts":[{"nr":"V-1","status":"active","meters":[{"no":"Z-1","type":"power"},{"no":"Z-2","type":"gas"}]}],` +
		`"tags":["vip","newsletter"],"balance":-12.5,"active":true,"note":null}`)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeJSON(payload); err != nil {
			b.Fatal(err)
		}
	}
}
