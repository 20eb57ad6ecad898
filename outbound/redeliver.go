package outbound

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/httpapi"
)

// Bounds of one redelivery request.
const (
	MaxRedeliverIDs   = 1000
	MaxRedeliveries   = 10_000
	redeliverScanTime = 30 * time.Second
	deadLetterDays    = 14
)

type redeliverRequest struct {
	DeliveryIDs []string `json:"delivery_ids"`
	FromDate    string   `json:"from_date"`
	ToDate      string   `json:"to_date"`
}

// redeliver re-enqueues dead-lettered deliveries of the integration, by id or by the time they
// were dead-lettered: each gets a fresh schedule of attempts and keeps its webhook-id.
func (s *Service) redeliver(c *gin.Context) {
	snap := s.cfg.Registry.Snapshot()
	integ, ok := httpapi.OrgIntegration(c, snap, c.Param("integrationId"))
	if !ok {
		return
	}
	var req redeliverRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if len(req.DeliveryIDs) == 0 && req.FromDate == "" {
		httpapi.BadRequest(c, "delivery_ids or from_date: one is required")
		return
	}
	if len(req.DeliveryIDs) > MaxRedeliverIDs {
		httpapi.BadRequest(c, "delivery_ids: at most %d", MaxRedeliverIDs)
		return
	}
	now := s.now()
	from, to := now.Add(-deadLetterDays*24*time.Hour), now
	for _, f := range []struct {
		name string
		raw  string
		into *time.Time
	}{{"from_date", req.FromDate, &from}, {"to_date", req.ToDate, &to}} {
		if f.raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339, f.raw)
		if err != nil {
			httpapi.BadRequest(c, "%s: an RFC 3339 date-time", f.name)
			return
		}
		*f.into = t
	}
	if to.Before(from) {
		httpapi.BadRequest(c, "to_date: before from_date")
		return
	}
	want := map[string]bool{}
	for _, id := range req.DeliveryIDs {
		want[id] = true
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), redeliverScanTime)
	defer cancel()
	found, complete, err := s.scanDeadLetters(ctx, integ.OrgID, integ.ID, from, to, want)
	if err != nil && len(found) == 0 {
		httpapi.Abort(c, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "the dead-letter topic is unreadable; retry")
		return
	}
	ids := []string{}
	for _, d := range found {
		d.Attempts, d.Redelivery, d.DueMs, d.LastError = 0, d.Redelivery+1, now.UnixMilli(), ""
		s.produceDurably(c.Request.Context(), s.cfg.Topics.OutboundRetries[0], d)
		ids = append(ids, d.ID)
	}
	notFound := []string{}
	for _, id := range req.DeliveryIDs {
		if _, ok := found[id]; !ok {
			notFound = append(notFound, id)
		}
	}
	c.JSON(http.StatusOK, gin.H{"redelivered": len(ids), "delivery_ids": ids, "not_found": notFound, "complete": complete})
}

// scanDeadLetters reads the dead letters written between from and to, keeping the latest of
// each delivery of the integration (filtered by want when it names any).
func (s *Service) scanDeadLetters(ctx context.Context, org, integration string, from, to time.Time, want map[string]bool) (map[string]*Delivery, bool, error) {
	topic := s.cfg.Topics.OutboundDead
	adm := kadm.NewClient(s.cfg.Producer)
	starts, err := adm.ListOffsetsAfterMilli(ctx, from.UnixMilli(), topic)
	if err != nil {
		return nil, false, err
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return nil, false, err
	}
	offsets := map[int32]kgo.Offset{}
	remaining := map[int32]int64{}
	starts.Each(func(o kadm.ListedOffset) {
		end, ok := ends.Lookup(topic, o.Partition)
		if ok && o.Err == nil && end.Err == nil && o.Offset < end.Offset {
			offsets[o.Partition] = kgo.NewOffset().At(o.Offset)
			remaining[o.Partition] = end.Offset
		}
	})
	found := map[string]*Delivery{}
	if len(offsets) == 0 {
		return found, true, nil
	}
	cl, err := kgo.NewClient(append(s.cfg.Kafka.BaseOpts(s.log),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}))...)
	if err != nil {
		return nil, false, err
	}
	defer cl.Close()
	for len(remaining) > 0 && len(found) < MaxRedeliveries {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return found, false, nil
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if end, ok := remaining[r.Partition]; ok && r.Offset+1 >= end {
				delete(remaining, r.Partition)
			}
			if r.Timestamp.After(to) {
				delete(remaining, r.Partition)
				return
			}
			var d Delivery
			if json.Unmarshal(r.Value, &d) != nil || d.OrgID != org || d.IntegrationID != integration {
				return
			}
			if len(want) > 0 && !want[d.ID] {
				return
			}
			found[d.ID] = &d
		})
	}
	return found, len(remaining) == 0, nil
}
