// Package replay re-enqueues stored events for the current configuration: a few by id, or every
// event of a time range in a resumable bulk run. It is a write: it reads the raw payloads the
// query side keeps in ClickHouse and produces new events onto the events topic, built by
// internal/envelope exactly as ingestion builds them. The query service stays read-only.
package replay

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/query"
)

// MaxEventIDs is how many events one replay request names at most.
const MaxEventIDs = 100

// Source reads stored raw events (query.ClickHouseStore is one).
type Source interface {
	RawEvents(ctx context.Context, f query.RawFilter, limit int, after *query.RawCursor) ([]envelope.Event, error)
	RawEventsByID(ctx context.Context, org, integrationID string, eventIDs []string) (map[string]envelope.Event, error)
}

// Producer writes replayed events.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Service serves the replay routes.
type Service struct {
	Source   Source
	Registry *registry.Registry
	Producer Producer
	Topics   kafkax.Topics
	Now      func() time.Time
	Log      *slog.Logger
	// Budgets pace bulk replays by the org's event and byte budgets (nil: unpaced).
	Budgets *quota.Budgets
}

// Register mounts the routes on an authenticated router group.
func (s *Service) Register(r gin.IRouter) {
	if s.Now == nil {
		s.Now = time.Now
	}
	events := httpapi.Require("erp:events")
	r.POST("/v1/integrations/:integrationId/events/replay", events, s.replay)
	r.POST("/v1/integrations/:integrationId/events/replay/bulk", httpapi.StreamOut(), events, s.replayBulk)
}

type result struct {
	EventID    string `json:"event_id"`
	Status     string `json:"status"`
	NewEventID string `json:"new_event_id,omitempty"`
	Message    string `json:"message,omitempty"`
}

// record rebuilds a stored event for the current configuration; nil with a result when it cannot
// be replayed. Within a bulk run (run != "") the new event's deduplication id follows from the run
// and the original event, so replaying it again in the same run is a duplicate, not a second
// mapping.
func (s *Service) record(snap *registry.Snapshot, e envelope.Event, run string) (*kgo.Record, result) {
	res := result{EventID: e.EventID}
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
	res.Status, res.NewEventID = "queued", ev.EventID
	return envelope.EventRecord(s.Topics.Events, &ev), res
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
	integ, ok := httpapi.OrgIntegration(c, s.Registry.Snapshot(), c.Param("integrationId"))
	if !ok {
		return
	}
	if len(req.EventIDs) < 1 || len(req.EventIDs) > MaxEventIDs {
		httpapi.BadRequest(c, "event_ids: 1 to %d ids", MaxEventIDs)
		return
	}
	found, err := s.Source.RawEventsByID(c, integ.OrgID, integ.ID, req.EventIDs)
	if err != nil {
		s.Log.Error("replay: reading stored events failed", "err", err)
		c.Header("Retry-After", "5")
		httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable, "monitoring store unavailable")
		return
	}
	snap := s.Registry.Snapshot()
	results := make([]result, len(req.EventIDs))
	var records []*kgo.Record
	for i, id := range req.EventIDs {
		e, ok := found[id]
		if !ok {
			results[i] = result{EventID: id, Status: "not_found", Message: "no stored event with this id in the last 14 days"}
			continue
		}
		rec, res := s.record(snap, e, "")
		results[i] = res
		if rec != nil {
			records = append(records, rec)
		}
	}
	if len(records) > 0 {
		if err := s.Producer.ProduceSync(c.Request.Context(), records...).FirstErr(); err != nil {
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
