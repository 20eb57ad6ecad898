package auth

import (
	"strings"
	"testing"
)

func TestStaticTokensTakeEveryPermissionName(t *testing.T) {
	tokens := &StaticTokens{}
	if err := ParseStaticTokens("a=org-a, b=org-b:integration:view+integration:consume, c=org-c:erp:read", tokens); err != nil {
		t.Fatal(err)
	}
	for token, want := range map[string]string{"a": strings.Join(AllPermissions, ","), "b": "erp:read,erp:monitoring,erp:events", "c": "erp:read"} {
		p, err := tokens.Authenticate(token)
		if err != nil || p == nil || strings.Join(p.Permissions, ",") != want {
			t.Errorf("%s: %+v %v, want %s", token, p, err, want)
		}
	}
	if err := ParseStaticTokens("broken", tokens); err == nil || strings.Contains(err.Error(), "broken=") {
		t.Errorf("malformed entry: %v", err)
	}
}
