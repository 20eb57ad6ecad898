package app

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// heldOrgs writes the orgs ingest holds back now for taking more than their share of the
// processors' mapping time while other orgs wait: each org's last word on the org-load topic, if
// its hold has not ended. The answer to "why does this org get 429s?".
func heldOrgs(ctx context.Context, kc kafkax.Config, log *slog.Logger, out io.Writer, topic string, now time.Time) {
	cl, err := kgo.NewClient(append(append(kc.BaseOpts(log), kafkax.ChangelogOpts()...),
		kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		fmt.Fprintf(out, "orgs held back for mapping time: %v\n", err)
		return
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	type word struct {
		load envelope.OrgLoad
		at   time.Time
	}
	last := map[string]word{}
	if _, err := kafkax.CatchUp(ctx, cl, log, topic, nil, func(r *kgo.Record) {
		var l envelope.OrgLoad
		if json.Unmarshal(r.Value, &l) == nil && l.Org == string(r.Key) {
			last[l.Org] = word{l, r.Timestamp}
		}
	}); err != nil {
		fmt.Fprintf(out, "orgs held back for mapping time: %s not read (%v)\n", topic, err)
		return
	}
	var held []string
	for org, w := range last {
		if w.load.HoldMs > 0 && w.at.Add(time.Duration(w.load.HoldMs)*time.Millisecond).After(now) {
			held = append(held, org)
		}
	}
	if len(held) == 0 {
		fmt.Fprintln(out, "orgs held back for mapping time: none")
		return
	}
	slices.Sort(held)
	for _, org := range held {
		w := last[org]
		left := w.at.Add(time.Duration(w.load.HoldMs) * time.Millisecond).Sub(now).Round(time.Second)
		fmt.Fprintf(out, "org %s: held back for mapping time (%.1f s of a processor's last minute, share %.0f s; %s more unless said again; ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN)\n",
			org, float64(w.load.MappingMs)/1000, float64(w.load.LimitMs)/1000, left)
	}
}
