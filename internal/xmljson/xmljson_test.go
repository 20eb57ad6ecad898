package xmljson

import (
	"strings"
	"testing"

	"github.com/erpstream/erpstream/internal/jsonata"
)

func convert(t *testing.T, x string) string {
	t.Helper()
	v, err := Convert([]byte(x))
	if err != nil {
		t.Fatalf("%s: %v", x, err)
	}
	b, _ := jsonata.MarshalValue(v)
	return string(b)
}

func TestTheDocumentedRule(t *testing.T) {
	cases := map[string]string{
		`<customer id="C001"><name>John Doe</name><phone>1</phone><phone>2</phone></customer>`: `{"customer":{"@id":"C001","name":"John Doe","phone":["1","2"]}}`,
		`<a><b/><c></c><d>  </d></a>`:                               `{"a":{"b":"","c":"","d":"  "}}`,
		`<price currency="EUR">12.50</price>`:                       `{"price":{"@currency":"EUR","#text":"12.50"}}`,
		`<sap:doc xmlns:sap="urn:sap"><sap:id>7</sap:id></sap:doc>`: `{"sap:doc":{"@xmlns:sap":"urn:sap","sap:id":"7"}}`,
		`<?xml version="1.0"?><r><![CDATA[<not a tag>]]></r>`:       `{"r":"<not a tag>"}`,
		"<r>\n  <x>1</x>\n  <x>2</x>\n  <x>3</x>\n</r>":             `{"r":{"x":["1","2","3"]}}`,
		`<r><x><y>1</y></x><x><y>2</y></x></r>`:                     `{"r":{"x":[{"y":"1"},{"y":"2"}]}}`,
		`<r>a &amp; b &lt; c</r>`:                                   `{"r":"a & b < c"}`,
	}
	for in, want := range cases {
		if got := convert(t, in); got != want {
			t.Errorf("%s\n got %s\nwant %s", in, got, want)
		}
	}
}

func TestMalformedAndHostileXMLIsRejected(t *testing.T) {
	for name, x := range map[string]string{
		"unclosed":         `<a><b></a>`,
		"two roots":        `<a/><b/>`,
		"no root":          `just text`,
		"entity bomb":      `<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;">]><a>&lol2;</a>`,
		"undefined entity": `<a>&nope;</a>`,
		"external entity":  `<!DOCTYPE a [<!ENTITY x SYSTEM "file:///etc/passwd">]><a>&x;</a>`,
		"absurd depth":     strings.Repeat("<a>", MaxDepth+1) + strings.Repeat("</a>", MaxDepth+1),
		"mismatched close": `<a></b>`,
		"text after root":  `<a/>tail`,
	} {
		if _, err := Convert([]byte(x)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzConvert(f *testing.F) {
	f.Add(`<customer id="C001"><name>John Doe</name><phone>1</phone><phone>2</phone></customer>`)
	f.Add(`<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>`)
	f.Fuzz(func(t *testing.T, x string) {
		v, err := Convert([]byte(x))
		if err == nil {
			if _, err := jsonata.MarshalValue(v); err != nil {
				t.Fatalf("converted value does not marshal: %v", err)
			}
		}
	})
}
