package query

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
)

// Replay: stored events re-enqueued for the current configuration, one by one or in bulk.

type replayResult struct {
	EventID    string `json:"event_id"`
	Status     string `json:"status"`
	NewEventID string `json:"new_event_id,omitempty"`
	Message    string `json:"message,omitempty"`
}

// replayRecord rebuilds a stored event for the current configuration; nil with a result when it
// cannot be replayed.
func (s *Service) replayRecord(snap *registry.Snapshot, e envelope.Event) (*kgo.Record, replayResult) {
	return s.replayRecordIn(snap, e, "")
}

// replayRecordIn is replayRecord within a bulk replay run: the new event's id and deduplication
// id follow from the run and the original event, so replaying it again in the same run is a
// duplicate, not a second mapping.
func (s *Service) replayRecordIn(snap *registry.Snapshot, e envelope.Event, run string) (*kgo.Record, replayResult) {
	res := replayResult{EventID: e.EventID}
	uc, ok := snap.UseCase(e.OrgID, e.UseCaseID)
	if !ok && e.UseCaseSlug != "" {
		uc, ok = snap.UseCaseBySlug(e.OrgID, e.IntegrationID, e.UseCaseSlug)
	}
	switch {
	case !ok:
		res.Status, res.Message = "ignored", "the event's use case no longer exists"
		return nil, res
	case !uc.Enabled:
		res.Status, res.Message = "ignored", "use case "+uc.Slug+" is disabled"
		return nil, res
	}
	ev := e
	ev.EventID = ids.EventID(s.Now())
	ev.UseCaseID, ev.UseCaseSlug = uc.ID, uc.Slug
	ev.Replay = true // deduplication does not apply; the original receive time keeps $now() and ordering
	if run != "" {
		ev.ReplayRun, ev.DeduplicationID, ev.ReplayedAtMs = run, "replay-"+run+"-"+e.EventID, s.Now().UnixMilli()
	}
	if !strings.HasPrefix(ev.CorrelationID, "replay_") {
		ev.CorrelationID = "replay_" + ev.CorrelationID
	}
	value := ev.AppendJSON(nil)
	res.Status, res.NewEventID = "queued", ev.EventID
	return &kgo.Record{Topic: s.Topics.Events, Key: envelope.RecordKey(&ev), Value: value, Headers: envelope.Headers(&ev)}, res
}

// replay re-enqueues up to 100 stored events (14-day horizon) with new ids and replay_ correlation
// ids; always 200 with a result per id in request order.
func (s *Service) replay(c *gin.Context) {
	var req struct {
		EventIDs []string `json:"event_ids"`
	}
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	if len(req.EventIDs) < 1 || len(req.EventIDs) > 100 {
		bad(c, "event_ids: 1 to 100 ids")
		return
	}
	if s.Producer == nil {
		httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "replay is not available in this process")
		return
	}
	found, err := s.Store.RawEventsByID(c, integ.OrgID, integ.ID, req.EventIDs)
	if err != nil {
		s.storeFailed(c, err)
		return
	}
	snap := s.Registry.Snapshot()
	results := make([]replayResult, len(req.EventIDs))
	var records []*kgo.Record
	for i, id := range req.EventIDs {
		e, ok := found[id]
		if !ok {
			results[i] = replayResult{EventID: id, Status: "not_found", Message: "no stored event with this id in the last 14 days"}
			continue
		}
		rec, res := s.replayRecord(snap, e)
		results[i] = res
		if rec != nil {
			records = append(records, rec)
		}
	}
	if len(records) > 0 {
		if err := s.Producer.ProduceSync(c, records...).FirstErr(); err != nil {
			c.Header("Retry-After", "5")
			httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "replayed events could not be stored; retry")
			return
		}
	}
	newIDs := []string{}
	for _, r := range results {
		if r.NewEventID != "" {
			newIDs = append(newIDs, r.NewEventID)
		}
	}
	c.JSON(http.StatusOK, gin.H{"replayed": len(records), "results": results, "event_ids": newIDs})
}

// replayBulk replays every stored event of a time range (beyond the spec, for reprocessing after a
// mapping fix): POST …/events/replay/bulk {"from_date", "to_date", "correlation_id"?, "event_name"?}.
// The response streams NDJSON progress lines ({"replayed": n, "ignored": m}) every 1,000 events
// and a final {"done": true, …}.
func (s *Service) replayBulk(c *gin.Context) {
	var req bulkReplayRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, ok := s.integration(c, c.Param("integrationId"))
	if !ok {
		return
	}
	var resume *bulkReplayCursor
	if req.Cursor != "" {
		cur, err := decodeBulkReplayCursor(req.Cursor, integ.OrgID, integ.ID)
		if err != nil {
			bad(c, "cursor: %v", err)
			return
		}
		resume = cur
		req.FromDate, req.ToDate, req.CorrelationID, req.EventName = cur.From, cur.To, cur.CorrelationID, cur.EventName
	}
	if req.FromDate == "" {
		bad(c, "from_date: required")
		return
	}
	from, to, ok := s.timeRange(c, "from_date", req.FromDate, "to_date", req.ToDate)
	if !ok {
		return
	}
	if s.Producer == nil {
		httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "replay is not available in this process")
		return
	}
	run := ids.NewUUID()
	var after *RawCursor
	if resume != nil {
		run = resume.Run
		if resume.AfterUs > 0 { // a cursor at no event resumes the run from its start
			after = &RawCursor{ReceivedAtUs: resume.AfterUs, EventID: resume.AfterEventID}
		}
	}
	c.Header("Content-Type", "application/x-ndjson")
	c.Status(http.StatusOK)
	out := bufio.NewWriter(c.Writer)
	enc := json.NewEncoder(out)
	progress := map[string]any{"replayed": 0, "ignored": 0, "failed": 0}
	var failed error
	snap := s.Registry.Snapshot()
	for {
		httpapi.StreamProgress(c)
		rows, err := s.Store.RawEvents(c, RawFilter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to,
			CorrelationID: req.CorrelationID, EventName: req.EventName}, 1000, after)
		if err != nil {
			failed = err
			break
		}
		if len(rows) == 0 {
			break
		}
		var records []*kgo.Record
		for _, e := range rows {
			if e.Replay {
				continue // replays of replays would multiply
			}
			rec, _ := s.replayRecordIn(snap, e, run)
			if rec == nil {
				progress["ignored"] = progress["ignored"].(int) + 1
				continue
			}
			records = append(records, rec)
		}
		if s.Budgets != nil && len(records) > 0 {
			// A bulk replay spends the org's event budget like ingestion does, waiting for it.
			var bytes int64
			for _, r := range records {
				bytes += int64(len(r.Key) + len(r.Value))
			}
			if err := s.Budgets.TakeWait(c, integ.OrgID, len(records), bytes); err != nil {
				failed = err
				break
			}
		}
		if err := s.Producer.ProduceSync(c, records...).FirstErr(); err != nil {
			failed = err
			break
		}
		progress["replayed"] = progress["replayed"].(int) + len(records)
		last := rows[len(rows)-1]
		after = &RawCursor{ReceivedAtUs: last.ReceivedAtUs, EventID: last.EventID}
		progress["cursor"] = bulkReplayCursor{Run: run, OrgID: integ.OrgID, IntegrationID: integ.ID, From: req.FromDate, To: req.ToDate,
			CorrelationID: req.CorrelationID, EventName: req.EventName, AfterUs: after.ReceivedAtUs, AfterEventID: after.EventID}.encode()
		_ = enc.Encode(progress)
		_ = out.Flush()
		c.Writer.Flush()
	}
	progress["done"] = failed == nil
	if failed != nil {
		progress["error"] = "stopped: " + failed.Error() + "; send the last progress line's cursor to resume"
	}
	_ = enc.Encode(progress)
	_ = out.Flush()
}
