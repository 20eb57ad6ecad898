package typegen

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func infer(t *testing.T, slug, cfg string) *UseCase {
	t.Helper()
	uc, warnings := Infer(slug, slug, json.RawMessage(cfg))
	if len(warnings) > 0 {
		t.Fatalf("%s: %v", slug, warnings)
	}
	return uc
}

func TestInferRequestAndResponse(t *testing.T) {
	for _, tc := range []struct{ name, cfg, request, response string }{
		{"placeholders", `{"operation":{"method":"GET","path":"/customers/{{customer.id}}","query_params":{"q":"{{term}}"},"headers":{"X-Key":"{{env.KEY}}","X-T":"{{trace}}"}}}`,
			`{ customer: { id: string | number; }; term: string | number; trace: string | number; }`, `unknown`},
		{"request mapping", `{"operation":{"method":"POST","path":"/orders"},"request_mapping":"{\"sku\": item.sku, \"lines\": lines.{\"n\": qty}}"}`,
			`{ item: { sku?: unknown; }; lines: { qty?: unknown; }[]; }`, `unknown`},
		{"response constructors", `{"operation":{"method":"GET","path":"/x"},"response_mapping":"{\"name\": first & ' ' & last, \"vendors\": vendors.{\"id\": id, \"active\": status = 'A'}, \"total\": $sum(items.price)}"}`,
			`Record<string, unknown>`, `{ name: string; total: number; vendors: { active: boolean; id?: unknown; }[]; }`},
		{"conditional and map", `{"operation":{"method":"GET","path":"/x"},"response_mapping":"$map(rows, function($r) { $r.ok ? {\"v\": $number($r.v)} : null })"}`,
			`Record<string, unknown>`, `({ v: number; } | null)[]`},
	} {
		uc := infer(t, tc.name, tc.cfg)
		if got := render(uc.Request); got != tc.request {
			t.Errorf("%s request\n got %s\nwant %s", tc.name, got, tc.request)
		}
		if got := render(uc.Response); got != tc.response {
			t.Errorf("%s response\n got %s\nwant %s", tc.name, got, tc.response)
		}
	}
}

func TestAnnotationsReplaceInferredTypes(t *testing.T) {
	uc := infer(t, "get", `{"operation":{"method":"GET","path":"/c/{{id}}"},"response_mapping":"{\"vendors\": vendors.{\"id\": id}, \"n\": n}"}`)
	warnings := uc.Annotate(&Annotations{Request: map[string]string{"id": "string"},
		Response: map[string]string{"vendors[].id": "string", "n": "number[]", "extra.flag": "boolean", "bad": "Date"}})
	if len(warnings) != 1 || !strings.Contains(warnings[0], `"Date"`) {
		t.Errorf("warnings %v, want one for the unknown type", warnings)
	}
	if got := render(uc.Request); got != `{ id: string; }` {
		t.Errorf("request %s", got)
	}
	if got := render(uc.Response); got != `{ extra: { flag: boolean; }; n?: number[]; vendors: { id?: string; }[]; }` {
		t.Errorf("response %s", got)
	}
}

func TestDiffAndBump(t *testing.T) {
	v1 := map[string]*UseCase{
		"get":  infer(t, "get", `{"operation":{"method":"GET","path":"/c/{{id}}"},"response_mapping":"{\"name\": n & '', \"age\": $number(a)}"}`),
		"gone": infer(t, "gone", `{"operation":{"method":"GET","path":"/g"}}`),
	}
	same := map[string]*UseCase{"get": v1["get"], "gone": v1["gone"]}
	if changes := Diff(v1, same); len(changes) != 0 {
		t.Errorf("no change: %v", changes)
	}
	if v, bump := Bump("1.4.2", nil); v != "1.5.0" || bump != "minor" {
		t.Errorf("no changes: %s %s", v, bump)
	}
	added := map[string]*UseCase{"get": infer(t, "get", `{"operation":{"method":"GET","path":"/c/{{id}}"},"response_mapping":"{\"name\": n & '', \"age\": $number(a), \"city\": c & ''}"}`),
		"gone": v1["gone"], "new": infer(t, "new", `{"operation":{"method":"GET","path":"/n"}}`)}
	changes := Diff(v1, added)
	if v, bump := Bump("1.4.2", changes); v != "1.5.0" || bump != "minor" || len(changes) != 2 {
		t.Errorf("additions: %s %s %v", v, bump, changes)
	}
	broken := map[string]*UseCase{"get": infer(t, "get", `{"operation":{"method":"GET","path":"/c/{{id}}/{{region}}"},"response_mapping":"{\"name\": $number(n)}"}`)}
	changes = Diff(v1, broken)
	want := map[string]bool{"gone:": true, "get:request.region": true, "get:response.age": true, "get:response.name": true}
	for _, c := range changes {
		if c.Type != Breaking || !want[c.Slug+":"+c.Field] {
			t.Errorf("unexpected change %+v", c)
		}
		delete(want, c.Slug+":"+c.Field)
	}
	if len(want) != 0 {
		t.Errorf("missed breaking changes %v", want)
	}
	if v, bump := Bump("1.4.2", changes); v != "2.0.0" || bump != "major" {
		t.Errorf("breaking: %s %s", v, bump)
	}
	if v, bump := Bump("", nil); v != "1.0.0" || bump != "major" {
		t.Errorf("first version: %s %s", v, bump)
	}
}

// The generated package type-checks with the TypeScript compiler, used the way a caller would.
// make test installs typescript from npm and sets ERPSTREAM_TSC (and ERPSTREAM_REQUIRE_TSC=1,
// so the check cannot be skipped there).
func TestGeneratedPackageTypeChecks(t *testing.T) {
	ucs := []*UseCase{
		infer(t, "get-customer", `{"operation":{"method":"GET","path":"/customers/{{customer.id}}"},"response_mapping":"{\"name\": first & ' ' & last, \"tags\": tags.{\"id\": id}, \"score\": $number(s), \"state\": s > 1 ? 'hot' : null}"}`),
		infer(t, "create_order", `{"operation":{"method":"POST","path":"/orders"},"request_mapping":"{\"sku\": item.sku, \"n\": qty}"}`),
		infer(t, "9-raw", `{"operation":{"method":"GET","path":"/raw"}}`),
	}
	files, warnings := Generate(Package{Name: "@acme/billing", Version: "1.0.0", IntegrationID: "i-1", IntegrationName: "Billing"}, ucs)
	if len(warnings) != 0 {
		t.Errorf("warnings %v", warnings)
	}
	var manifest map[string]any
	if err := json.Unmarshal([]byte(files["package.json"]), &manifest); err != nil || manifest["name"] != "@acme/billing" || manifest["types"] != "index.d.ts" {
		t.Fatalf("package.json: %v %s", err, files["package.json"])
	}
	for _, want := range []string{"export type GetCustomerRequest = { customer: { id: string | number; }; };", "getCustomer(payload: GetCustomerRequest",
		"createOrder(", `"9-raw": { request: UseCase9RawRequest;`} {
		if !strings.Contains(files["index.d.ts"], want) {
			t.Errorf("index.d.ts lacks %q:\n%s", want, files["index.d.ts"])
		}
	}
	tsc := os.Getenv("ERPSTREAM_TSC")
	if tsc == "" {
		if os.Getenv("ERPSTREAM_REQUIRE_TSC") != "" {
			t.Fatal("ERPSTREAM_TSC is not set: make test installs the TypeScript compiler")
		}
		t.Skip("ERPSTREAM_TSC not set (make test sets it): the generated package is not compiled")
	}
	dir := t.TempDir()
	pkgDir := filepath.Join(dir, "node_modules", "@acme", "billing")
	if err := os.MkdirAll(pkgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(pkgDir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	usage := `import { createClient, ManagedCallError } from "@acme/billing";
const client = createClient({ baseUrl: "https://erp.example", token: "t" });
async function main(): Promise<string> {
  const r = await client.getCustomer({ customer: { id: "K-1" } });
  const name: string = r.data.name;
  const score: number = r.data.score;
  const tags: { id?: unknown }[] = r.data.tags;
  await client.execute("create_order", { item: { sku: "S-1" } });
  // @ts-expect-error a missing required placeholder
  await client.getCustomer({});
  // @ts-expect-error an unknown use case
  await client.execute("nope", {});
  const state: "hot" | string | null = r.data.state;
  return name + score + tags.length + String(state) + String(ManagedCallError);
}
main();
`
	if err := os.WriteFile(filepath.Join(dir, "usage.ts"), []byte(usage), 0o644); err != nil {
		t.Fatal(err)
	}
	// nodenext: what TypeScript 5 and 7 both accept for a CommonJS package with types.
	cmd := exec.Command(tsc, "--noEmit", "--strict", "--target", "es2022", "--module", "nodenext", "--moduleResolution", "nodenext", "usage.ts")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tsc: %v\n%s\n%s", err, out, files["index.d.ts"])
	}
	// The client itself: it posts to the managed-call route with the token and the integration.
	smoke := `const { createClient } = require("@acme/billing");
const seen = [];
const client = createClient({ baseUrl: "https://erp.example/", token: "t", fetch: async (url, init) => {
  seen.push([url, init.headers.Authorization, JSON.parse(init.body)]);
  return { status: 200, json: async () => ({ success: true, data: { name: "Lea" } }) };
} });
client.getCustomer({ customer: { id: "K 1" } }, "corr").then((r) => {
  const [url, auth, body] = seen[0];
  if (url !== "https://erp.example/v1/managed-call/get-customer/execute" || auth !== "Bearer t" || body.integration_id !== "i-1" ||
      body.payload.customer.id !== "K 1" || body.correlation_id !== "corr" || r.data.name !== "Lea") { console.error(JSON.stringify(seen)); process.exit(1); }
});
`
	if err := os.WriteFile(filepath.Join(dir, "smoke.js"), []byte(smoke), 0o644); err != nil {
		t.Fatal(err)
	}
	node := exec.Command("node", "smoke.js")
	node.Dir = dir
	if out, err := node.CombinedOutput(); err != nil {
		t.Fatalf("node smoke.js: %v\n%s", err, out)
	}
}
