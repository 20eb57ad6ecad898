package fileproxy

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/erpstream/erpstream/internal/secrets"
)

func TestLinksVerifyAndRefuseTampering(t *testing.T) {
	box, _ := secrets.NewBox(secrets.NewKey())
	s, err := NewSigner(box, "k2", []string{"k1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	link := s.Sign("org-a", "https://erp.example/files/download?orgId=org-a&integrationId=i-1&useCaseSlug=docs&docId=D%201")
	u, _ := url.Parse(link)
	if err := s.Verify(u.Query()); err != nil {
		t.Fatalf("fresh link: %v (%s)", err, link)
	}
	for name, mutate := range map[string]func(q url.Values){
		"param changed":  func(q url.Values) { q.Set("docId", "D 2") },
		"param added":    func(q url.Values) { q.Set("extra", "1") },
		"other org":      func(q url.Values) { q.Set("orgId", "org-b") },
		"no signature":   func(q url.Values) { q.Del("sig") },
		"two signatures": func(q url.Values) { q.Add("sig", q.Get("sig")) },
		"unknown key id": func(q url.Values) { q.Set("kid", "k9") },
		"flipped sig":    func(q url.Values) { sig := []byte(q.Get("sig")); sig[0] ^= 1; q.Set("sig", string(sig)) },
	} {
		q := u.Query()
		mutate(q)
		if err := s.Verify(q); !errors.Is(err, ErrSignature) {
			t.Errorf("%s: %v, want refused", name, err)
		}
	}
	// The same link re-encoded differently still verifies.
	q := u.Query()
	again, _ := url.ParseQuery(strings.ReplaceAll(q.Encode(), "+", "%20"))
	if err := s.Verify(again); err != nil {
		t.Errorf("re-encoded link: %v", err)
	}
	// A link signed under a previous key id verifies; one of another deployment does not.
	old, _ := NewSigner(box, "k1", nil, 0)
	u1, _ := url.Parse(old.Sign("org-a", "http://x/download?orgId=org-a&integrationId=i&useCaseSlug=d"))
	if err := s.Verify(u1.Query()); err != nil {
		t.Errorf("previous key id: %v", err)
	}
	otherBox, _ := secrets.NewBox(secrets.NewKey())
	other, _ := NewSigner(otherBox, "k2", nil, 0)
	u2, _ := url.Parse(other.Sign("org-a", "http://x/download?orgId=org-a&integrationId=i&useCaseSlug=d"))
	if err := s.Verify(u2.Query()); !errors.Is(err, ErrSignature) {
		t.Errorf("another deployment's link: %v", err)
	}
}

func TestLinksExpire(t *testing.T) {
	box, _ := secrets.NewBox(secrets.NewKey())
	s, _ := NewSigner(box, "", nil, time.Hour)
	now := time.Unix(1_700_000_000, 0)
	s.now = func() time.Time { return now }
	u, _ := url.Parse(s.Sign("org-a", "http://x/download?orgId=org-a&integrationId=i&useCaseSlug=d"))
	if u.Query().Get("exp") == "" || s.Verify(u.Query()) != nil {
		t.Fatalf("link %s", u)
	}
	now = now.Add(61 * time.Minute)
	if err := s.Verify(u.Query()); !errors.Is(err, ErrSignature) || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired link: %v", err)
	}
	q := u.Query()
	q.Set("exp", "9999999999")
	if err := s.Verify(q); !errors.Is(err, ErrSignature) {
		t.Errorf("extended expiry: %v", err)
	}
}

func TestLimiterPerLinkAndPerClient(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := linkLimiter{now: func() time.Time { return now }, seen: map[string]*linkWindow{}}
	for i := 0; i < 3; i++ {
		if !l.allow("a", 3) {
			t.Fatalf("request %d refused", i)
		}
	}
	if l.allow("a", 3) {
		t.Error("fourth request within the minute allowed")
	}
	if !l.allow("b", 3) {
		t.Error("another key shares the window")
	}
	now = now.Add(61 * time.Second)
	if !l.allow("a", 3) {
		t.Error("a new minute did not reset the window")
	}
}
