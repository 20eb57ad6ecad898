package ingest

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/quota"
)

// OrgLoadWatch follows the org-load topic from its start (its client consumes it, read
// committed): the processors name there the orgs whose events take more than their share of
// mapping time while other orgs' events wait. Each such org's new events are held back in the
// budgets for the hold its last record names (a release ends it at once).
type OrgLoadWatch struct {
	cl      *kgo.Client
	budgets *quota.Budgets
	log     *slog.Logger
	// history is where the topic ended when the watch began: holds before it run from their
	// own time, later ones from when they are read.
	history map[int32]int64
}

// NewOrgLoadWatch notes where the topic ends now. Unknown (the broker away): everything counts
// as read now, which holds an org 15 s too long at most.
func NewOrgLoadWatch(ctx context.Context, cl *kgo.Client, topic string, budgets *quota.Budgets, log *slog.Logger) *OrgLoadWatch {
	w := &OrgLoadWatch{cl: cl, budgets: budgets, log: log, history: map[int32]int64{}}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if ends, err := kadm.NewClient(cl).ListEndOffsets(lctx, topic); err == nil {
		ends.Each(func(o kadm.ListedOffset) { w.history[o.Partition] = o.Offset })
	}
	return w
}

// Run follows the topic until ctx ends; the client rides out a broker that is away.
func (w *OrgLoadWatch) Run(ctx context.Context) error {
	cl, budgets, log, history := w.cl, w.budgets, w.log, w.history
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
				// A hold runs from when it is read here, so a processor whose clock is behind
				// this host's still holds the org; one from before this watcher started runs
				// from its own time (mostly over already).
				from := time.Now()
				if r.Offset < history[r.Partition] && r.Timestamp.Before(from) {
					from = r.Timestamp
				}
				until = from.Add(time.Duration(load.HoldMs) * time.Millisecond)
			}
			budgets.HoldBack(load.Org, until)
		})
	}
}
