//go:build integration

// The file proxy on the real services: an entity written by the pipeline carries a signed link;
// the link downloads the document from a loopback archive (token endpoint, a lookup step, then the
// file as base64 JSON or binary); tampered, other-org and unsigned links are refused; a slow, huge
// or failing archive gives the documented error; the token is fetched once for many downloads.
package fileproxy_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/erpstream/erpstream/app"
	"github.com/erpstream/erpstream/app/apptest"
	"github.com/erpstream/erpstream/fileproxy"
	"github.com/erpstream/erpstream/internal/secrets"
)

var pdf = append([]byte("%PDF-1.7\n"), bytes.Repeat([]byte{0, 1, 2, 250}, 5000)...)

type archive struct {
	srv    *httptest.Server
	tokens atomic.Int32
}

func startArchive(t *testing.T) *archive {
	t.Helper()
	a := &archive{}
	ln, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	a.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/oauth/token" {
			_ = r.ParseForm()
			if r.PostForm.Get("grant_type") != "password" || r.PostForm.Get("username") != "erp" || r.PostForm.Get("password") != "archive-pass" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			a.tokens.Add(1)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"access_token":"arch-token","token_type":"Bearer","expires_in":3600}`)
			return
		}
		if r.Header.Get("Authorization") != "Bearer arch-token" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch {
		case strings.HasPrefix(r.URL.Path, "/api/documents/"):
			id := strings.TrimPrefix(r.URL.Path, "/api/documents/")
			_, _ = fmt.Fprintf(w, `{"fileId":"f-%s","title":"Rechnung %s"}`, id, id)
		case strings.HasPrefix(r.URL.Path, "/api/files/"):
			_, _ = fmt.Fprintf(w, `{"content":%q,"mime":"application/pdf"}`, base64.StdEncoding.EncodeToString(pdf))
		case strings.HasPrefix(r.URL.Path, "/api/raw/"):
			w.Header().Set("Content-Type", "application/pdf")
			_, _ = w.Write(pdf)
		case r.URL.Path == "/api/slow":
			time.Sleep(3 * time.Second)
		case r.URL.Path == "/api/huge":
			_, _ = w.Write(make([]byte, 3<<20))
		default:
			w.WriteHeader(http.StatusInternalServerError)
		}
	}))
	a.srv.Listener = ln
	a.srv.Start()
	t.Cleanup(a.srv.Close)
	return a
}

func fileProxy(slug, steps, response string) string {
	return `{"name":"` + slug + `","slug":"` + slug + `","type":"file_proxy","enabled":true,"configuration":{
	 "auth":{"type":"oauth2_password","token_url":"\\{{env.ARCHIVE}}/oauth/token","client_id":"erpstream","client_secret":"\\{{env.ARCHIVE_SECRET}}",
	   "username":"erp","password":"\\{{env.ARCHIVE_PASSWORD}}"},
	 "params":[{"name":"docId","required":true}],"steps":` + steps + `,"response":` + response + `}}`
}

func TestIntegrationFileProxyDownloads(t *testing.T) {
	a := startArchive(t)
	e := apptest.New(t)
	key := secrets.NewKey()
	e.Configure = func(c *app.Config) {
		c.EgressAllowCIDRs = []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")}
		c.EgressTimeout = time.Second
		c.SecretsKey = key
		c.FileProxyMaxBytes = 2 << 20
	}
	e.Start()
	for _, v := range [][3]string{{"ARCHIVE", a.srv.URL, "String"}, {"ARCHIVE_SECRET", "cs-1", "SecretString"}, {"ARCHIVE_PASSWORD", "archive-pass", "SecretString"}} {
		if status, body := e.Call("PUT", "/v1/environment/"+v[0], `{"value":"`+v[1]+`","type":"`+v[2]+`"}`); status != http.StatusOK {
			t.Fatalf("env %s: %d %v", v[0], status, body)
		}
	}
	lookup := `{"url":"\\{{env.ARCHIVE}}/api/documents/{{params.docId}}","method":"GET","response_type":"json"}`
	id := e.CreateIntegration(`{"name":"Archive","use_cases":[
	 {"name":"Documents","slug":"documents","type":"inbound","enabled":true,"configuration":{"entities":[{"entity_schema":"contract",
	  "unique_ids":["nr"],"fields":[{"attribute":"nr","field":"nr"},
	  {"attribute":"invoice","file_proxy_url":{"use_case_slug":"invoice-pdf","params":{"docId":{"field":"docId"}}}},
	  {"attribute":"raw","file_proxy_url":{"use_case_slug":"raw-pdf","params":{"docId":{"field":"docId"}}}}]}]}},
	 ` + fileProxy("invoice-pdf", `[`+lookup+`,{"url":"\\{{env.ARCHIVE}}/api/files/{{steps.0.body.fileId}}","method":"GET","response_type":"json"}]`,
		`{"body":"steps[1].body.content","encoding":"base64","filename":"steps[0].body.title & '.pdf'","content_type":"steps[1].body.mime"}`) + `,
	 ` + fileProxy("raw-pdf", `[`+lookup+`,{"url":"\\{{env.ARCHIVE}}/api/raw/{{steps.0.body.fileId}}","method":"GET","response_type":"binary"}]`,
		`{"body":"''","encoding":"binary","filename":"'raw-' & steps[0].body.fileId & '.pdf'"}`) + `,
	 ` + fileProxy("slow", `[{"url":"\\{{env.ARCHIVE}}/api/slow","method":"GET","response_type":"json"}]`, `{"body":"x","encoding":"base64"}`) + `,
	 ` + fileProxy("huge", `[{"url":"\\{{env.ARCHIVE}}/api/huge","method":"GET","response_type":"binary"}]`, `{"body":"''","encoding":"binary"}`) + `,
	 ` + fileProxy("broken", `[{"url":"\\{{env.ARCHIVE}}/api/nope","method":"GET","response_type":"json"}]`, `{"body":"x","encoding":"base64"}`) + `]}`)

	e.SendOne(id, "documents", `{"nr":"V-1","docId":"R 2025/17"}`)
	var invoice, raw string
	apptest.WaitFor(t, func() bool {
		var attrs string
		err := e.Conn.QueryRow(t.Context(), `SELECT attributes FROM entities FINAL WHERE org_id = 'dev-org' AND entity_schema = 'contract'`).Scan(&attrs)
		if err != nil {
			return false
		}
		var m map[string]any
		_ = json.Unmarshal([]byte(attrs), &m)
		invoice, _ = m["invoice"].(string)
		raw, _ = m["raw"].(string)
		return invoice != "" && raw != ""
	})
	if !strings.Contains(invoice, "sig=") || !strings.Contains(invoice, "kid=") {
		t.Fatalf("the entity's link is not signed: %s", invoice)
	}
	var lastReadErr error
	get := func(link string) (*http.Response, []byte) {
		t.Helper()
		u, _ := url.Parse(link)
		resp, err := http.Get(e.URL + "/download?" + u.RawQuery)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		lastReadErr = err
		return resp, b
	}
	for i := 0; i < 5; i++ {
		resp, body := get(invoice)
		if resp.StatusCode != http.StatusOK || !bytes.Equal(body, pdf) || resp.Header.Get("Content-Type") != "application/pdf" ||
			!strings.Contains(resp.Header.Get("Content-Disposition"), `filename="Rechnung R 2025/17.pdf"`) && !strings.Contains(resp.Header.Get("Content-Disposition"), "Rechnung R 2025_17.pdf") {
			t.Fatalf("download %d: %d %s %v (%d bytes) %.300s", i, resp.StatusCode, resp.Header.Get("Content-Disposition"), resp.Header, len(body), body)
		}
	}
	resp, body := get(raw)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, pdf) || !strings.Contains(resp.Header.Get("Content-Disposition"), "raw-f-R 2025_17.pdf") {
		t.Errorf("binary download: %d %v (%d bytes)", resp.StatusCode, resp.Header, len(body))
	}
	if n := a.tokens.Load(); n != 1 {
		t.Errorf("%d token requests for 6 downloads, want 1", n)
	}

	// Tampered, other-org and unsigned links.
	u, _ := url.Parse(invoice)
	for name, mutate := range map[string]func(q url.Values){
		"other document": func(q url.Values) { q.Set("docId", "R 2025/18") },
		"other org":      func(q url.Values) { q.Set("orgId", "org-b") },
		"unsigned":       func(q url.Values) { q.Del("sig") },
	} {
		q := u.Query()
		mutate(q)
		resp, body := get("http://x/download?" + q.Encode())
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "SIGNATURE_VERIFICATION_FAILED") {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	// Links to the failing use cases, signed with the deployment's key as the pipeline signs them.
	box, _ := secrets.NewBox(key)
	signer, _ := fileproxy.NewSigner(box, "", nil, 0)
	link := func(s *fileproxy.Signer, slug string) string {
		return s.Sign("dev-org", "http://x/download?orgId=dev-org&integrationId="+id+"&useCaseSlug="+slug+"&docId=1")
	}
	// A binary answer over the cap without a Content-Length is cut off: the client sees a broken
	// transfer, never a short file that looks complete.
	if resp, body := get(link(signer, "huge")); resp.StatusCode == http.StatusOK && (lastReadErr == nil || len(body) > 2<<20) {
		t.Errorf("huge: %d, %d bytes, read error %v", resp.StatusCode, len(body), lastReadErr)
	}
	for slug, want := range map[string][2]any{
		"slow":   {http.StatusGatewayTimeout, "FILE_PROXY_TIMEOUT"},
		"broken": {http.StatusBadGateway, "FILE_EXTRACTION_FAILED"},
	} {
		resp, body := get(link(signer, slug))
		if resp.StatusCode != want[0].(int) || !strings.Contains(string(body), want[1].(string)) {
			t.Errorf("%s: %d %s, want %d %s", slug, resp.StatusCode, body, want[0], want[1])
		}
	}
	short, _ := fileproxy.NewSigner(box, "", nil, time.Nanosecond)
	expired := link(short, "invoice-pdf")
	time.Sleep(1100 * time.Millisecond)
	if resp, body := get(expired); resp.StatusCode != http.StatusForbidden {
		t.Errorf("expired link: %d %s", resp.StatusCode, body)
	}
	missing := signer.Sign("dev-org", "http://x/download?orgId=dev-org&integrationId="+id+"&useCaseSlug=invoice-pdf")
	if resp, body := get(missing); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "docId") {
		t.Errorf("link without the required param: %d %s", resp.StatusCode, body)
	}
	apptest.WaitFor(t, func() bool {
		return e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'file_proxy' AND code = 'FILE_PROXY_OK'`) == 6 &&
			e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'file_proxy' AND code = 'SIGNATURE_VERIFICATION_FAILED'`) == 3 &&
			e.Scalar(`SELECT count() FROM monitoring_events FINAL WHERE use_case_type = 'file_proxy' AND code = 'FILE_EXTRACTION_FAILED'
				AND position(detail, '"step":0') > 0`) == 1
	})
	if n := e.Scalar(`SELECT count() FROM monitoring_events WHERE use_case_type = 'file_proxy' AND (position(detail, 'archive-pass') > 0 OR position(message, 'arch-token') > 0)`); n != 0 {
		t.Errorf("%d monitoring rows carry a secret", n)
	}
}
