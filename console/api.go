package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
)

// The console reads and acts only through erpstream's own API, dispatched in the process to the
// same router that serves it on the network, with the operator's token: authentication,
// permissions, org scoping, rate limits, bounds and the access log apply to every page and
// action exactly as they apply to an API client, and the pages answer from the same queries.
// No request leaves the process.

// maxAnswerBytes bounds one API answer the console buffers (a page of events with payloads).
const maxAnswerBytes = 32 << 20

// answer is one API response.
type answer struct {
	Status int
	Body   []byte
	header http.Header
}

// OK reports a 2xx answer.
func (a *answer) OK() bool { return a.Status >= 200 && a.Status < 300 }

// decode reads the answer's JSON body into v.
func (a *answer) decode(v any) error {
	if err := json.Unmarshal(a.Body, v); err != nil {
		return fmt.Errorf("undecodable API answer (%d): %w", a.Status, err)
	}
	return nil
}

// Problem is the API's error message of a failed answer (ErrorResponseBase).
func (a *answer) Problem() string {
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(a.Body, &e) == nil && e.Message != "" {
		return e.Code + ": " + e.Message
	}
	return fmt.Sprintf("HTTP %d", a.Status)
}

// recorder is the response writer an in-process API call writes into.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
	// onWrite, when set, sees each write (a streamed answer's lines as they come).
	onWrite func([]byte)
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(status int) {
	if r.status == 0 {
		r.status = status
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if r.onWrite != nil {
		r.onWrite(b)
		return len(b), nil
	}
	if r.body.Len()+len(b) > maxAnswerBytes {
		return 0, fmt.Errorf("console: API answer larger than %d bytes", maxAnswerBytes)
	}
	return r.body.Write(b)
}

// Flush lets streaming routes flush (gin requires an http.Flusher).
func (r *recorder) Flush() {}

// caller is who an API call is made for: the operator's token and the request it serves.
type caller struct {
	token      string
	remoteAddr string
	requestID  string
	userAgent  string
	// calls numbers the API calls of one console request: each has its own request id
	// (<page's id>.c<n>) and so its own access log entry.
	calls *atomic.Int32
}

// call sends one API request in the process and returns its answer.
func (h *Handler) call(ctx context.Context, who caller, method, path string, body any) *answer {
	return h.callStreaming(ctx, who, method, path, body, nil)
}

func (h *Handler) callStreaming(ctx context.Context, who caller, method, path string, body any, onWrite func([]byte)) *answer {
	var reader *bytes.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return &answer{Status: http.StatusInternalServerError, Body: []byte(`{"code":"INTERNAL","message":"console: unencodable request"}`)}
		}
		reader = bytes.NewReader(b)
	}
	var req *http.Request
	var err error
	if reader != nil {
		req, err = http.NewRequestWithContext(ctx, method, path, reader)
	} else {
		req, err = http.NewRequestWithContext(ctx, method, path, nil)
	}
	if err != nil {
		return &answer{Status: http.StatusBadRequest, Body: []byte(`{"code":"VALIDATION_ERROR","message":"console: bad request path"}`)}
	}
	req.Header.Set("Authorization", "Bearer "+who.token)
	req.Header.Set("Accept", "application/json")
	if reader != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The access log names the operator's browser and the console page's request id.
	req.Header.Set("User-Agent", strings.TrimSpace("erpstream-console "+who.userAgent))
	if who.requestID != "" && who.calls != nil {
		req.Header.Set("X-Request-Id", who.requestID+".c"+strconv.Itoa(int(who.calls.Add(1))))
	}
	req.RemoteAddr = who.remoteAddr
	rec := &recorder{header: http.Header{}, onWrite: onWrite}
	h.cfg.API.ServeHTTP(rec, req)
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	return &answer{Status: rec.status, Body: rec.body.Bytes(), header: rec.header}
}
