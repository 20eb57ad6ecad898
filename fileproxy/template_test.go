package fileproxy

import (
	"context"
	"strings"
	"testing"

	"github.com/erpstream/erpstream/connector"
	"github.com/erpstream/erpstream/internal/kafkax/kafkatest"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/registry/registrytest"
	"github.com/erpstream/erpstream/internal/secrets"
)

func TestTemplatesNeverTurnDataIntoSecrets(t *testing.T) {
	reg := registrytest.Start(t, kafkatest.New(t))
	box, _ := secrets.NewBox(secrets.NewKey())
	sealed, _ := box.Seal("s3cret", "org-a/API_KEY")
	if err := reg.PutEnvVar(context.Background(), &registry.EnvVar{OrgID: "org-a", Key: "API_KEY", Type: "SecretString", Sealed: sealed}); err != nil {
		t.Fatal(err)
	}
	if err := reg.PutEnvVar(context.Background(), &registry.EnvVar{OrgID: "org-a", Key: "erp.base_url", Type: "String", Value: "https://archive.example"}); err != nil {
		t.Fatal(err)
	}
	env := connector.NewEnv(reg.Snapshot(), box, "org-a")
	ctx := templateContext(map[string]any{"params": map[string]any{"docId": "D&1 {{env.API_KEY}}"},
		"steps": []any{map[string]any{"body": map[string]any{"token": "<t>"}, "statusCode": 200}}}).(map[string]any)
	for tmpl, want := range map[string]string{
		`\{{env.erp.base_url}}/docs/{{params.docId}}`: "https://archive.example/docs/D&1 {{env.API_KEY}}",
		`{{env.erp.base_url}}/x`:                      "https://archive.example/x", // written unescaped: escaped for the engine
		`Bearer {{steps.0.body.token}}`:               "Bearer <t>",
		`{"key": "\{{env.API_KEY}}"}`:                 `{"key": "s3cret"}`,
		`{{#if params.docId}}yes{{/if}}`:              "yes",
		`{{steps.[0].statusCode}}`:                    "200",
		`https://x/api/v1.0.5/{{steps.0.statusCode}}`: "https://x/api/v1.0.5/200",
	} {
		got, err := render(tmpl, ctx, env)
		if err != nil || got != want {
			t.Errorf("%s\n got %q (%v)\nwant %q", tmpl, got, err, want)
		}
	}
	if _, err := render(`{{params.docId`, ctx, env); err == nil {
		t.Error("unbalanced template rendered")
	}
	if _, err := render(`\{{env.MISSING}}`, ctx, env); err == nil || !strings.Contains(err.Error(), "MISSING") {
		t.Errorf("missing variable: %v", err)
	}
}
