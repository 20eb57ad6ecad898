package replay

import (
	"bufio"
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/query"
)

// BulkPage is how many stored events a bulk replay reads, paces and produces at a time.
const BulkPage = 1000

// replayBulk replays every stored event of a time range (beyond the spec, for reprocessing after a
// mapping fix): POST …/events/replay/bulk {"from_date", "to_date", "correlation_id"?, "event_name"?}.
// The response streams NDJSON progress lines ({"replayed": n, "ignored": m}) every 1,000 events
// and a final {"done": true, …}.
func (s *Service) replayBulk(c *gin.Context) {
	var req bulkReplayRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, ok := httpapi.OrgIntegration(c, s.Registry.Snapshot(), c.Param("integrationId"))
	if !ok {
		return
	}
	var resume *bulkReplayCursor
	if req.Cursor != "" {
		cur, err := decodeBulkReplayCursor(req.Cursor, integ.OrgID, integ.ID)
		if err != nil {
			httpapi.BadRequest(c, "cursor: %v", err)
			return
		}
		resume = cur
		req.FromDate, req.ToDate, req.CorrelationID, req.EventName = cur.From, cur.To, cur.CorrelationID, cur.EventName
		if cur.Failed {
			req.Status = "error"
		}
	}
	if req.Status != "" && req.Status != "error" {
		httpapi.BadRequest(c, "status: only \"error\" (replay the events whose mapping failed), or absent for all")
		return
	}
	failedOnly := req.Status == "error"
	if req.FromDate == "" {
		httpapi.BadRequest(c, "from_date: required")
		return
	}
	from, to, err := query.ParseRange(s.Now(), "from_date", req.FromDate, "to_date", req.ToDate)
	if err != nil {
		httpapi.BadRequest(c, "%s", err.Error())
		return
	}
	run := ids.NewUUID()
	var after *query.RawCursor
	if resume != nil {
		run = resume.Run
		if resume.AfterUs > 0 { // a cursor at no event resumes the run from its start
			after = &query.RawCursor{ReceivedAtUs: resume.AfterUs, EventID: resume.AfterEventID}
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
		rows, err := s.Source.RawEvents(c, query.RawFilter{OrgID: integ.OrgID, IntegrationID: integ.ID, From: from, To: to,
			CorrelationID: req.CorrelationID, EventName: req.EventName, Failed: failedOnly}, BulkPage, after)
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
			rec, _ := s.record(snap, e, run)
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
		if err := s.Producer.ProduceSync(c.Request.Context(), records...).FirstErr(); err != nil {
			failed = err
			break
		}
		progress["replayed"] = progress["replayed"].(int) + len(records)
		last := rows[len(rows)-1]
		after = &query.RawCursor{ReceivedAtUs: last.ReceivedAtUs, EventID: last.EventID}
		progress["cursor"] = bulkReplayCursor{Run: run, OrgID: integ.OrgID, IntegrationID: integ.ID, From: req.FromDate, To: req.ToDate,
			CorrelationID: req.CorrelationID, EventName: req.EventName, Failed: failedOnly, AfterUs: after.ReceivedAtUs, AfterEventID: after.EventID}.encode()
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
