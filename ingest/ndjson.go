package ingest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/tracing"
)

// NDJSON bulk ingestion, for initial loads and nightly full syncs:
//
//	POST /v3/erp/updates/events/ndjson?integration_id=<uuid>[&correlation_id=<id>]
//	Content-Type: application/x-ndjson
//
// Each line is either one event (ErpEventV3, for the integration of the query) or one envelope
// ({"integration_id", "correlation_id", "events": [...]}, at most 100 events). The body is read,
// validated and produced line by line, never held whole. The response streams one result line per
// event, in input order, each written only after Kafka acknowledged that event:
//
//	{"line": 3, "event_id": "evt_…", "status": "success", "message": "Event queued for processing"}
//
// and ends with {"summary": {"lines": …, "success": …, "error": …, "ignored": …, "skipped": …}}.
// A result with status "error" and code "NOT_STORED" means the broker did not take that event:
// resend those lines (their deduplication ids make resending safe).

// MaxLineBytes bounds one NDJSON line (one envelope of up to 100 events).
const MaxLineBytes = 4 << 20

// ndjsonWindow is how many records may await their acknowledgement before reading pauses.
const ndjsonWindow = 10000

type lineResult struct {
	Line    int    `json:"line"`
	Index   *int   `json:"index,omitempty"` // position within an envelope line
	EventID string `json:"event_id,omitempty"`
	Status  string `json:"status"`
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
}

// pendingLine is one line's results, waiting for its records' acknowledgements.
type pendingLine struct {
	results   []lineResult
	remaining atomic.Int64
	done      chan struct{} // closed when every record is acknowledged (or failed)
	mu        sync.Mutex
	err       error
	records   int
	release   func() // gives the line's bytes in flight back to the org's budget
}

func (p *pendingLine) ack(err error) {
	if err != nil {
		p.mu.Lock()
		if p.err == nil {
			p.err = err
		}
		p.mu.Unlock()
	}
	if p.remaining.Add(-1) == 0 {
		if p.release != nil {
			p.release()
		}
		close(p.done)
	}
}

// fail marks a line whose records were never produced.
func (p *pendingLine) fail(err error) {
	p.err = err
}

// throttle waits for the org's budgets for one line's records (bounded by the stream's idle
// timeout) and holds its bytes in flight until the line is acknowledged.
func (s *Service) throttle(ctx context.Context, org string, line *pendingLine, records []*kgo.Record) error {
	if s.cfg.Budgets == nil {
		return nil
	}
	wctx, cancel := context.WithTimeout(ctx, httpapi.StreamIdleTimeout/2)
	defer cancel()
	bytes := recordBytes(records)
	if err := s.cfg.Budgets.TakeWait(wctx, org, len(records), bytes); err != nil {
		return err
	}
	release, err := s.cfg.Budgets.Hold(wctx, org, bytes)
	if err != nil {
		return err
	}
	line.release = release
	return nil
}

func (s *Service) eventsNDJSON(c *gin.Context) {
	org := httpapi.Principal(c).OrgID
	defaultIntegration := c.Query("integration_id")
	correlation := c.Query("correlation_id")
	snap := s.cfg.Registry.Snapshot()
	if defaultIntegration != "" {
		if _, ok := snap.Integration(org, defaultIntegration); !ok {
			httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound, "integration "+defaultIntegration+" not found")
			return
		}
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	out := bufio.NewWriterSize(c.Writer, 64<<10)
	enc := json.NewEncoder(out)
	summary := map[string]int{"lines": 0, "success": 0, "error": 0, "ignored": 0, "skipped": 0}
	ctx := c.Request.Context()

	var queue []*pendingLine
	inFlight := 0
	flushDone := func(block bool) {
		for len(queue) > 0 {
			head := queue[0]
			if head.done != nil {
				if block {
					<-head.done
				} else {
					select {
					case <-head.done:
					default:
						return
					}
				}
			}
			inFlight -= head.records
			for _, r := range head.results {
				if head.err != nil && r.Status == "success" {
					r.Status, r.Code, r.Message = "error", "NOT_STORED", "not stored: "+head.err.Error()+"; resend this line"
					s.events.WithLabelValues("not_stored").Inc()
				} else if r.EventID != "" { // a line that never became an event (unparsable) has no id
					s.events.WithLabelValues(r.Status).Inc()
				}
				summary[r.Status]++
				_ = enc.Encode(r)
			}
			queue = queue[1:]
		}
		_ = out.Flush()
		c.Writer.Flush()
	}

	sc := bufio.NewScanner(c.Request.Body)
	sc.Buffer(make([]byte, 64<<10), MaxLineBytes)
	line := 0
	for {
		httpapi.StreamProgress(c) // each line (read, produced, answered) buys another idle timeout
		if !sc.Scan() {
			break
		}
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		summary["lines"]++
		p := s.prepareLine(snap, org, defaultIntegration, correlation, line, raw)
		p.line.records = len(p.recordsToSend)
		if p.line.records > 0 {
			// A stream spends the org's budgets like requests do, event by event; when they are
			// spent it waits (backpressure) rather than failing lines.
			if err := s.throttle(ctx, org, p.line, p.recordsToSend); err != nil {
				p.line.fail(err)
				p.recordsToSend = nil
			}
		}
		if len(p.recordsToSend) > 0 {
			p.line.done = make(chan struct{})
			p.line.remaining.Store(int64(p.line.records))
			for _, rec := range p.recordsToSend {
				tracing.Inject(ctx, rec)
				s.cfg.Producer.Produce(ctx, rec, func(_ *kgo.Record, err error) { p.line.ack(err) })
			}
		} else {
			p.line.records = 0
		}
		inFlight += p.line.records
		queue = append(queue, p.line)
		flushDone(inFlight >= ndjsonWindow)
	}
	if err := sc.Err(); err != nil {
		line++
		msg := err.Error()
		if err == bufio.ErrTooLong {
			msg = "line longer than 4 MB; reading stopped here"
		}
		queue = append(queue, &pendingLine{results: []lineResult{{Line: line, Status: "error", Code: "VALIDATION_ERROR", Message: msg}}})
	}
	flushDone(true)
	_ = enc.Encode(map[string]any{"summary": summary})
	_ = out.Flush()
}

type preparedLine struct {
	line          *pendingLine
	recordsToSend []*kgo.Record
}

func (s *Service) prepareLine(snap *registry.Snapshot, org, defaultIntegration, correlation string, line int, raw []byte) preparedLine {
	fail := func(msg string) preparedLine {
		return preparedLine{line: &pendingLine{results: []lineResult{{Line: line, Status: "error", Code: "VALIDATION_ERROR", Message: msg}}}}
	}
	if end, err := skipValue(raw, 0, 0); err != nil || skipWS(raw, end) != len(raw) || raw[0] != '{' {
		return fail("line is not one JSON object")
	}
	envelopeLine := false
	_ = eachMember(raw, func(k string, _ []byte) error {
		envelopeLine = envelopeLine || k == "events"
		return nil
	})
	integrationID := defaultIntegration
	corr := correlation
	events := []json.RawMessage{raw}
	if envelopeLine {
		req, err := parseRequest(raw)
		if err != nil {
			return fail("envelope: " + err.Error())
		}
		events = req.Events
		if len(events) > MaxEventsPerRequest {
			return fail("events: at most 100 events per envelope line")
		}
		if req.IntegrationID != "" {
			integrationID = req.IntegrationID
		}
		if req.CorrelationID != "" {
			corr = req.CorrelationID
		} else if req.Meta != nil && req.Meta.CorrelationID != "" {
			corr = req.Meta.CorrelationID
		}
	}
	if integrationID == "" {
		return fail("integration_id: required (in the query or on an envelope line)")
	}
	integ, ok := snap.Integration(org, integrationID)
	if !ok {
		return fail("integration " + integrationID + " not found")
	}
	if corr == "" {
		corr = "ndjson-" + integ.ID
	}
	results, records := s.prepare(org, integ, v3, corr, events, 0)
	pl := &pendingLine{results: make([]lineResult, len(results))}
	for i, r := range results {
		lr := lineResult{Line: line, EventID: r.EventID, Status: r.Status, Message: r.Message}
		if envelopeLine {
			idx := i
			lr.Index = &idx
		}
		pl.results[i] = lr
	}
	return preparedLine{line: pl, recordsToSend: records}
}
