package secrets

import "testing"

func TestSealOpenAndBinding(t *testing.T) {
	b, err := NewBox(NewKey())
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Seal("s3cret", "org-a/token")
	if err != nil {
		t.Fatal(err)
	}
	if c == "s3cret" || len(c) < 20 {
		t.Fatalf("not encrypted: %q", c)
	}
	if p, err := b.Open(c, "org-a/token"); err != nil || p != "s3cret" {
		t.Fatalf("open: %q %v", p, err)
	}
	if _, err := b.Open(c, "org-b/token"); err == nil {
		t.Fatal("a ciphertext opened under another org/key")
	}
	other, _ := NewBox(NewKey())
	if _, err := other.Open(c, "org-a/token"); err == nil {
		t.Fatal("opened with another key")
	}
	if _, err := NewBox("short"); err == nil {
		t.Fatal("accepted a short key")
	}
}

func TestReferences(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"erp.base_url": "https://erp.example", "PARTNER_TOKEN": "t"}[k]
		return v, ok
	}
	got, err := Resolve("{{ env.erp.base_url }}/api?t={{env.PARTNER_TOKEN}}", lookup)
	if err != nil || got != "https://erp.example/api?t=t" {
		t.Fatalf("%q %v", got, err)
	}
	if _, err := Resolve("{{env.missing}}", lookup); err == nil {
		t.Fatal("a missing variable resolved")
	}
	if !IsReference("{{env.PARTNER_TOKEN}}") || IsReference("x{{env.A}}") || IsReference("plain") {
		t.Fatal("IsReference")
	}
}
