package secureproxy

import (
	"encoding/json"
	"errors"
	"net/netip"
	"testing"

	"github.com/erpstream/erpstream/internal/registry"
)

func route(t *testing.T, cfg string) (*Route, error) {
	t.Helper()
	return ParseRoute(&registry.UseCase{Configuration: json.RawMessage(cfg)}, Proxies{SecureLink: "http://vpn:3128"})
}

func TestAllowedDomains(t *testing.T) {
	r, err := route(t, `{"vpc_mode":"secure_link","allowed_domains":["API.Partner.de.","*.wemag.com","bücher.example"],"allowed_ips":["10.0.1.0/24"]}`)
	if err != nil {
		t.Fatal(err)
	}
	for host, want := range map[string]bool{
		"api.partner.de": true, "API.PARTNER.DE.": true, "x.api.partner.de": false, "partner.de": false,
		"a.wemag.com": true, "a.b.wemag.com": true, "wemag.com": false, "evilwemag.com": false, "wemag.com.evil.org": false,
		"xn--bcher-kva.example": true, "bücher.example": true, "": false,
	} {
		if got := r.HostAllowed(host); got != want {
			t.Errorf("%q: %v, want %v", host, got, want)
		}
	}
	open, _ := route(t, `{"vpc_mode":"static_ip"}`)
	if !open.HostAllowed("anything.example") {
		t.Error("static_ip without allowed_domains must allow every host")
	}
}

func TestRouteConfigurationIsValidated(t *testing.T) {
	for _, cfg := range []string{
		`{"vpc_mode":"secure_link","allowed_ips":["10.0.0.0/8"]}`,
		`{"vpc_mode":"secure_link","allowed_domains":["a.example"]}`,
		`{"vpc_mode":"secure_link","allowed_domains":["*.com"],"allowed_ips":["10.0.0.0/8"]}`,
		`{"vpc_mode":"secure_link","allowed_domains":["a.example"],"allowed_ips":["10.0.0.0/33"]}`,
		`{"vpc_mode":"vpn"}`, ``,
	} {
		if _, err := route(t, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", cfg, err)
		}
	}
}

func TestPolicies(t *testing.T) {
	link, err := route(t, `{"vpc_mode":"secure_link","allowed_domains":["a.example"],"allowed_ips":["10.0.1.7","10.0.2.0/24"]}`)
	if err != nil {
		t.Fatal(err)
	}
	p := link.Policy("secure_proxy")
	if p.Proxy != "http://vpn:3128" || len(p.Only) != 2 || p.Only[0] != netip.MustParsePrefix("10.0.1.7/32") || len(p.Deny) == 0 {
		t.Errorf("secure_link policy %+v", p)
	}
	static, _ := route(t, `{"vpc_mode":"static_ip"}`)
	if p := static.Policy("secure_proxy"); len(p.Only) != 0 || len(p.Allow) != 0 || p.Proxy != "" {
		t.Errorf("static_ip policy %+v: full protection, no proxy configured", p)
	}
}
