//go:build integration

package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
)

// The console in a real browser: Debian's Chromium, headless, driven by chromedp, against the
// whole pipeline on Apache Kafka and ClickHouse. Screenshots of the main pages are written to
// ERPSTREAM_SCREENSHOTS (default .run/test/console-screenshots) for a person to look at.

const hostileName = `<script>window.__pwned=1</script><img src=x onerror="window.__pwned=2">`

func TestIntegrationConsoleInABrowser(t *testing.T) {
	env := apptest.New(t)
	env.Configure = func(c *app.Config) {
		c.APITokens = "ro-token=dev-org:erp:read+erp:monitoring,other-token=other-org"
	}
	env.Start()
	integ := env.CreateIntegration(apptest.IntegrationBody)
	// Three good events, one whose mapping fails (no customer number), one with markup in it.
	env.SendBatch(integ, "console-good", []string{apptest.CustomerEvent(1, "Anna", "c1"), apptest.CustomerEvent(2, "Ben", "c2"),
		apptest.CustomerEvent(3, "Cem", "c3")})
	failing := env.SendBatch(integ, "console-bad", []string{apptest.PayloadEvent("customer",
		`"{\"kundennummer\":\"K-77\",\"firstName\":\"Dora\",\"lastName\":\"Meyer\"}"`)})[0]
	hostile := env.SendBatch(integ, "console-hostile", []string{apptest.PayloadEvent("customer",
		jsonString(`{"customerNumber":"K-66","firstName":`+jsonString(hostileName)+`,"lastName":"X"}`))})[0]
	env.WaitStats(integ, 5)

	shots := os.Getenv("ERPSTREAM_SCREENSHOTS")
	if shots == "" {
		shots = filepath.Join(repoRoot(t), ".run", "test", "console-screenshots")
	}
	apptest.Must(t, os.MkdirAll(shots, 0o755))
	b := newBrowser(t, shots)

	// Sign in: the console sends a signed-out visitor to the sign-in page and back.
	b.run(chromedp.Navigate(env.URL + "/console/integrations"))
	b.waitText("h1", "Sign in")
	b.shot("01-sign-in")
	b.run(chromedp.SendKeys(chromedp.ID("token"), "it-token"), chromedp.Submit(chromedp.ID("login")))
	b.waitText("h1", "Integrations")
	b.waitText("#org", "dev-org")
	row := b.text("#integrations tbody")
	// 5 events: 4 mapped, 1 failed.
	if !strings.Contains(row, "SAP") || !strings.Contains(row, "MISSING_UNIQUE_IDENTIFIERS") || !strings.Contains(row, "80.0 %") {
		t.Fatalf("integrations page: %q", row)
	}
	b.shot("02-integrations")

	// The integration: charts, top errors, events; filtered to errors.
	b.run(chromedp.Click(chromedp.CSS("a.integration-link")))
	b.waitText("#top-errors", "MISSING_UNIQUE_IDENTIFIERS")
	if n := b.count("figure.chart svg rect"); n == 0 {
		t.Fatal("no bars in the charts")
	}
	b.shot("03-integration")
	b.run(chromedp.SetValue(chromedp.ID("filter-level"), "error"), chromedp.Click(chromedp.ID("apply-filters")))
	b.waitURL("level=error")
	b.waitText("#events tbody", "MISSING_UNIQUE_IDENTIFIERS")
	if list := b.text("#events tbody"); strings.Contains(list, "success") {
		t.Fatalf("error filter shows other levels: %q", list)
	}
	b.shot("04-integration-errors")

	// The failed event's trace, then fix the mapping and replay it from the console.
	b.run(chromedp.Click(chromedp.CSS("a.event-link")))
	b.waitText("#event-id", failing)
	b.waitText("#payload", "kundennummer")
	b.waitText("#trace", "MISSING_UNIQUE_IDENTIFIERS")
	b.shot("05-event-trace")
	fixed := strings.Replace(apptest.IntegrationBody[strings.Index(apptest.IntegrationBody, `{"entities"`):strings.LastIndex(apptest.IntegrationBody, `}]}`)],
		`{"attribute":"customer_number","field":"customerNumber"}`,
		`{"attribute":"customer_number","jsonataExpression":"$exists(customerNumber) ? customerNumber : kundennummer"}`, 1)
	ucID := useCaseID(t, env, integ)
	if st, body := env.Call("PUT", "/v1/integrations/"+integ+"/use-cases/"+ucID, `{"configuration":`+fixed+`,"change_description":"read kundennummer too"}`); st != http.StatusOK {
		t.Fatalf("fix mapping: %d %v", st, body)
	}
	b.run(chromedp.Click(chromedp.ID("replay-event")))
	b.waitText("#confirm h1", "Replay 1 event")
	b.shot("06-confirm-replay")
	b.run(chromedp.Click(chromedp.ID("confirm-action")))
	b.waitText("#outcome", "1 event queued")
	b.run(chromedp.Click(chromedp.CSS("#outcome-lines a")))
	// The replay's own trace page fills in once the pipeline has mapped it.
	b.reloadUntil("#trace", "ENTITY_CREATED", "success")
	b.shot("07-replayed-event")

	// A hostile payload is shown as text and runs nothing.
	b.run(chromedp.Navigate(env.URL + "/console/integrations/" + integ + "/events/" + hostile))
	b.waitText("#payload", "<script>window.__pwned=1</script>")
	if pwned := b.eval(`String(window.__pwned)`); pwned != "undefined" {
		t.Fatalf("the payload's script ran: window.__pwned = %v", pwned)
	}
	if n := b.count("#payload script, #payload img, main img"); n != 0 {
		t.Fatalf("the payload became %d elements", n)
	}
	b.shot("08-hostile-payload")

	// The use case: history and a diff of the fix; the mapping simulation side by side.
	b.run(chromedp.Navigate(env.URL + "/console/integrations/" + integ + "/use-cases/" + ucID))
	b.waitText("#current-version", "read kundennummer too")
	b.waitText("#history", "tok_")
	b.waitText("#diff", "kundennummer")
	if n := b.count("#diff .dadd"); n == 0 {
		t.Fatal("the diff marks no added line")
	}
	b.shot("09-use-case-diff")
	b.run(chromedp.Navigate(env.URL+"/console/integrations/"+integ+"/simulate?use_case_id="+ucID),
		chromedp.SetValue(chromedp.ID("sim-payload"), `{"kundennummer":"K-5","firstName":"Eva","lastName":"Roth"}`),
		chromedp.Click(chromedp.ID("run-simulation")))
	b.waitText("#sim-result", "Eva Roth")
	b.shot("10-simulation")

	// Replay all failed events of the last hour (a bulk replay with progress), then disable.
	b.run(chromedp.Navigate(env.URL + "/console/integrations/" + integ))
	b.run(chromedp.Submit(chromedp.ID("replay-failed")))
	b.waitText("#confirm h1", "Replay failed events")
	b.run(chromedp.Click(chromedp.ID("confirm-action")))
	b.waitText("#job-state", "done")
	if got := b.text("#job-replayed"); got != "1" {
		t.Fatalf("bulk replay of failed events replayed %s events, want 1 (the one failed event)", got)
	}
	b.shot("11-bulk-replay")
	b.run(chromedp.Navigate(env.URL+"/console/integrations/"+integ+"/use-cases/"+ucID), chromedp.Click(chromedp.ID("disable")))
	b.waitText("#confirm h1", "Disable use case")
	b.run(chromedp.Click(chromedp.ID("confirm-action")))
	b.waitText("#outcome", "is now disabled")
	if _, uc := env.Call("GET", "/v1/integrations/"+integ+"/use-cases/"+ucID, ""); uc["enabled"] != false {
		t.Fatalf("use case after disabling in the console: %v", uc)
	}

	// Every action went through the API: the access log holds the console's replays.
	apptest.WaitFor(t, func() bool {
		return env.Scalar(`SELECT count() FROM access_logs WHERE org_id = 'dev-org' AND path LIKE '%/events/replay%' AND request_id LIKE 'req_%.c%'`) >= 2
	})

	// Safety from outside the browser: CSP on every page, CSRF refused, a session cookie that
	// scripts cannot read.
	cookie := b.cookie()
	if !cookie.HTTPOnly || cookie.SameSite != network.CookieSameSiteStrict {
		t.Fatalf("session cookie: %+v", cookie)
	}
	page := get(t, env.URL+"/console/integrations", cookie.Value)
	if csp := page.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") {
		t.Fatalf("CSP: %q", csp)
	}
	forged := post(t, env.URL+"/console/integrations/"+integ+"/replay", cookie.Value, url.Values{"event_id": {failing}, "confirmed": {"yes"}})
	if forged.StatusCode != http.StatusForbidden {
		t.Fatalf("a replay without the CSRF token: %d", forged.StatusCode)
	}

	// A read-only token sees no actions, and a replay it forges is refused by the API.
	b.run(chromedp.Click(chromedp.ID("sign-out")))
	b.waitText("h1", "Sign in")
	b.run(chromedp.SendKeys(chromedp.ID("token"), "ro-token"), chromedp.Submit(chromedp.ID("login")))
	b.waitText("#org", "dev-org")
	b.run(chromedp.Navigate(env.URL + "/console/integrations/" + integ + "/events/" + failing))
	b.waitText("#event-id", failing)
	if n := b.count("#replay-event, .redeliver"); n != 0 {
		t.Fatalf("read-only token sees %d action buttons on the event page", n)
	}
	b.run(chromedp.Navigate(env.URL + "/console/integrations/" + integ))
	b.waitText("#events", "Event")
	if n := b.count("#replay-selected, #replay-failed, input.pick"); n != 0 {
		t.Fatalf("read-only token sees %d replay controls", n)
	}
	b.shot("12-read-only")
	roCookie := b.cookie()
	csrf := b.attr(`input[name="csrf"]`, "value")
	refused := post(t, env.URL+"/console/integrations/"+integ+"/replay", roCookie.Value,
		url.Values{"event_id": {failing}, "confirmed": {"yes"}, "csrf": {csrf}})
	if refused.StatusCode != http.StatusForbidden {
		t.Fatalf("read-only replay: %d, want 403 from the API", refused.StatusCode)
	}

	// Another org's token: the first org's integration is a 404 page, and so is its event.
	b.run(chromedp.Click(chromedp.ID("sign-out")), chromedp.WaitVisible(chromedp.ID("token")))
	b.run(chromedp.SendKeys(chromedp.ID("token"), "other-token"), chromedp.Submit(chromedp.ID("login")))
	b.waitText("#org", "other-org")
	if list := b.text("#integrations"); strings.Contains(list, "SAP") {
		t.Fatalf("other org lists the first org's integration: %q", list)
	}
	for _, path := range []string{"/console/integrations/" + integ, "/console/integrations/" + integ + "/events/" + failing,
		"/console/integrations/" + integ + "/use-cases/" + ucID} {
		b.run(chromedp.Navigate(env.URL + path))
		b.waitText("h1", "Not found")
		if got := get(t, env.URL+path, b.cookie().Value).StatusCode; got != http.StatusNotFound {
			t.Fatalf("%s for another org: %d", path, got)
		}
	}
	b.shot("13-other-org-not-found")
	t.Logf("screenshots in %s", shots)
}

// jsonString quotes s as a JSON (and JavaScript) string literal, leaving < and > as they are: the
// hostile payload must reach erpstream with its markup literal.
func jsonString(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s)
	return strings.TrimSpace(b.String())
}

func useCaseID(t *testing.T, env *apptest.Env, integ string) string {
	_, body := env.Call("GET", "/v1/integrations/"+integ+"/use-cases", "")
	return body["use_cases"].([]any)[0].(map[string]any)["id"].(string)
}

func repoRoot(t *testing.T) string {
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		wd, _ := os.Getwd()
		return filepath.Dir(wd)
	}
	return strings.TrimSpace(string(out))
}

func get(t *testing.T, u, session string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.AddCookie(&http.Cookie{Name: "erpstream_console", Value: session})
	return do(t, req)
}

func post(t *testing.T, u, session string, form url.Values) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	parsed, _ := url.Parse(u)
	req.Header.Set("Origin", parsed.Scheme+"://"+parsed.Host)
	req.AddCookie(&http.Cookie{Name: "erpstream_console", Value: session})
	return do(t, req)
}

func do(t *testing.T, req *http.Request) *http.Response {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// browser is one headless Chromium with a fresh profile.
type browser struct {
	t     *testing.T
	ctx   context.Context
	shots string
}

func newBrowser(t *testing.T, shots string) *browser {
	exe := os.Getenv("CHROMIUM")
	if exe == "" {
		exe = "/usr/bin/chromium"
	}
	if _, err := os.Stat(exe); err != nil {
		// Browser tests never skip: `make test` installs Debian's chromium (scripts/lib/chromium.sh).
		t.Fatalf("chromium not found at %s (run `make test`, which installs it): %v", exe, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exe), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1440, 1000),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, outside any timeout
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx, shots: shots}
}

func (b *browser) run(actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.shot("failed")
		b.t.Fatalf("browser: %v (page text: %.600s)", err, b.pageText())
	}
}

func (b *browser) pageText() string {
	ctx, cancel := context.WithTimeout(b.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerText : ""`))
	return s
}

func (b *browser) eval(expr string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return s
}

// text is the element's text; "" when the page has no such element.
func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(b.eval(`(function(){var e=document.querySelector(` + jsonString(sel) + `);return e?e.innerText:""})()`))
}

func (b *browser) attr(sel, name string) string {
	b.t.Helper()
	return b.eval(`(function(){var e=document.querySelector(` + jsonString(sel) + `);return e?(e.getAttribute(` + jsonString(name) + `)||""):""})()`)
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(`+jsonString(sel)+`).length`))
	if err != nil {
		b.t.Fatalf("count %s: %v", sel, err)
	}
	return n
}

// waitText waits until the element holds text.
func (b *browser) waitText(sel, text string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		s := b.text(sel)
		if strings.Contains(s, text) {
			return
		}
		if time.Now().After(deadline) {
			b.shot("failed")
			b.t.Fatalf("%s never showed %q (has %q; page: %.600s)", sel, text, s, b.pageText())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitURL waits until the page's address holds part (a navigation ended).
func (b *browser) waitURL(part string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(b.eval(`location.href`), part) {
		if time.Now().After(deadline) {
			b.t.Fatalf("the page never went to an address with %q (at %s)", part, b.eval(`location.href`))
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.waitText("body", "")
}

// reloadUntil reloads the page until sel holds every text.
func (b *browser) reloadUntil(sel string, texts ...string) {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		s := b.text(sel)
		all := true
		for _, text := range texts {
			all = all && strings.Contains(s, text)
		}
		if all {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s never showed %q (has %q)", sel, texts, s)
		}
		time.Sleep(500 * time.Millisecond)
		b.run(chromedp.Reload())
	}
}

func (b *browser) shot(name string) {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
		_ = os.WriteFile(filepath.Join(b.shots, name+".png"), png, 0o644)
	}
}

func (b *browser) cookie() *network.Cookie {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	res, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "erpstream_console" {
			return c
		}
	}
	b.t.Fatal("no console session cookie")
	return nil
}

// A dead-lettered webhook delivery is redelivered from the event's trace in the console, with
// the webhook-id of its first attempt.
func TestIntegrationConsoleRedeliversADeadLetter(t *testing.T) {
	rcv := &receiver{}
	stub := stubOn127002(t, rcv.handle)
	env := outboundEnv(t)
	body := strings.TrimSuffix(apptest.IntegrationBody, "]}") + `,
	 {"name":"Contacts out","type":"outbound","enabled":true,"configuration":{"event_catalog_event":"contact.created","ack_tracking":"off","mappings":[
	   {"id":"00000005-0000-4000-8000-000000000005","name":"Gone","enabled":true,"jsonata_expression":"{\"id\": entity._id}",
	    "delivery":{"type":"webhook","webhook_id":"gone","webhook_url":"` + stub.URL + `/gone"}}]}}]}`
	integ := env.CreateIntegration(body)
	event := env.SendBatch(integ, "console-redeliver", []string{apptest.CustomerEvent(1, "Anna", "r1")})[0]
	apptest.WaitFor(t, func() bool {
		return env.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE integration_id = ? AND code = 'WEBHOOK_FAILED'`, integ) == 1
	})
	first := rcv.got("/gone")[0].header.Get("webhook-id")

	b := newBrowser(t, t.TempDir())
	b.run(chromedp.Navigate(env.URL + "/console/integrations/" + integ + "/events/" + event))
	b.run(chromedp.SendKeys(chromedp.ID("token"), "it-token"), chromedp.Submit(chromedp.ID("login")))
	b.waitText("#deliveries", "WEBHOOK_FAILED")
	b.run(chromedp.Click(chromedp.CSS("button.redeliver")))
	b.waitText("#confirm h1", "Redeliver")
	b.run(chromedp.Click(chromedp.ID("confirm-action")))
	b.waitText("#outcome", "queued again")
	apptest.WaitFor(t, func() bool { return len(rcv.got("/gone")) >= 2 })
	if again := rcv.got("/gone")[1].header.Get("webhook-id"); again != first {
		t.Fatalf("redelivered with webhook-id %q, want the first attempt's %q", again, first)
	}
}
