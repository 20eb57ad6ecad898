package ingest

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/quota"
)

// WatchOrgLoad follows the org-load topic from its start (cl consumes it, read committed): the
// processors name there the orgs whose events take more than their share of mapping time while
// other orgs' events wait. Each such org's new events are held back in budgets for the hold its
// last record names (a release ends it at once). It returns when ctx ends; the client rides out
// a broker that is away.
func WatchOrgLoad(ctx context.Context, cl *kgo.Client, budgets *quota.Budgets, log *slog.Logger) error {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fs.EachError(func(topic string, part int32, err error) {
			log.Warn("org load: fetch error", "topic", topic, "partition", part, "err", err)
		})
		fs.EachRecord(func(r *kgo.Record) {
			var load envelope.OrgLoad
			if json.Unmarshal(r.Value, &load) != nil || load.Org == "" || load.Org != string(r.Key) {
				return
			}
			var until time.Time
			if load.HoldMs > 0 {
				// From the record's time (a hold read at start may be over already), but never
				// from a time ahead of this host's clock.
				from := time.Now()
				if r.Timestamp.Before(from) {
					from = r.Timestamp
				}
				until = from.Add(time.Duration(load.HoldMs) * time.Millisecond)
			}
			budgets.HoldBack(load.Org, until)
		})
	}
}
