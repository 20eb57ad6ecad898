package processor

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/kafkax"
)

// GrowReport is what GrowPartitions did.
type GrowReport struct {
	// From is the fewest partitions of the three topics before (the count the states were laid
	// out for, when a change was begun by hand), To their count after.
	From, To int32
	// Unmapped are events accepted but not mapped when the partitions were added: the processors
	// forward those now outside their org's partition there (a copy each).
	Unmapped int64
	Relayout RelayoutReport
}

// GrowPartitions gives the events topic and the two co-partitioned with it (entity states,
// deduplication marks) n partitions each and lays the states and marks out for them (Relayout):
// the steps of docs/scaling.md, "Adding partitions", in one, so the three never stay unequal.
// Topics at n already are left as they are, so it also finishes a change begun by hand, and a
// second run only lays out again (moving nothing). It refuses while a processor is in the group
// (a running processor would map against states being moved), a count below the topics' (Kafka
// cannot remove partitions) and a count the placement cannot use.
func GrowPartitions(ctx context.Context, kc kafkax.Config, t kafkax.Topics, n int32, log *slog.Logger) (GrowReport, error) {
	rep := GrowReport{To: n}
	cl, err := kgo.NewClient(kc.BaseOpts(log)...)
	if err != nil {
		return rep, err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := []string{t.Events, t.EntityState, t.Dedup}
	counts, err := partitionCounts(ctx, adm, topics)
	if err != nil {
		return rep, err
	}
	rep.From = min(counts[t.Events], counts[t.EntityState], counts[t.Dedup])
	grow := make([]string, 0, len(topics))
	for _, topic := range topics {
		if counts[topic] > n {
			return rep, fmt.Errorf("%s has %d partitions, more than %d: Kafka cannot remove partitions", topic, counts[topic], n)
		}
		if counts[topic] < n {
			grow = append(grow, topic)
		}
	}
	if err := t.Placement.Check(n); err != nil {
		return rep, err
	}
	if err := processorsStopped(ctx, adm, t.Events); err != nil {
		return rep, err
	}
	if lags, err := adm.Lag(ctx, DefaultGroup); err == nil {
		group := lags[DefaultGroup]
		lag := group.Lag
		if lag == nil {
			lag = kadm.GroupLag{}
		}
		if err := group.Error(); err != nil {
			log.Warn("unmapped events not counted", "err", err)
		} else if err := kafkax.FillNeverCommitted(ctx, adm, lag, t.Events); err != nil {
			log.Warn("unmapped events not counted in the partitions the processors never committed", "err", err)
		}
		for _, parts := range lag {
			for _, l := range parts {
				if l.Topic == t.Events && l.Err == nil && l.Lag > 0 {
					rep.Unmapped += l.Lag
				}
			}
		}
	}
	if len(grow) > 0 {
		resp, err := adm.UpdatePartitions(ctx, int(n), grow...)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return rep, fmt.Errorf("add partitions to %s: %w (run it again: topics at %d already are left as they are)", strings.Join(grow, ", "), err, n)
		}
	}
	// The extractions topic, a cache of map-ahead orgs' events mapped ahead, follows when it is
	// there: one partition per events partition (with fewer, partitions share one).
	if xc, err := partitionCounts(ctx, adm, []string{t.Extractions}); err == nil && xc[t.Extractions] < n {
		resp, err := adm.UpdatePartitions(ctx, int(n), t.Extractions)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			log.Warn("extractions topic not grown: map-ahead orgs' extractions share its partitions (a cache, exact either way)",
				"topic", t.Extractions, "err", err)
		}
	}
	// The topics' metadata can lag the change by a moment; Relayout must see the new count.
	for deadline := time.Now().Add(30 * time.Second); ; {
		counts, err = partitionCounts(ctx, adm, topics)
		if err == nil && counts[t.Events] == n && counts[t.EntityState] == n && counts[t.Dedup] == n {
			break
		}
		if time.Now().After(deadline) {
			return rep, fmt.Errorf("partitions added, but the topics do not show %d yet (%v, %v): run erpstream admin relayout", n, counts, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	rep.Relayout, err = Relayout(ctx, kc, t, log)
	if err != nil {
		return rep, fmt.Errorf("partitions added; laying the states out failed (run erpstream admin relayout): %w", err)
	}
	return rep, nil
}

func partitionCounts(ctx context.Context, adm *kadm.Client, topics []string) (map[string]int32, error) {
	details, err := adm.ListTopics(ctx, topics...)
	if err != nil {
		return nil, err
	}
	counts := map[string]int32{}
	for _, topic := range topics {
		d, ok := details[topic]
		if !ok || d.Err != nil {
			return nil, fmt.Errorf("topic %s: not found (erpstream admin ensure-topics)", topic)
		}
		counts[topic] = int32(len(d.Partitions))
	}
	return counts, nil
}

// processorsStopped refuses while a member of the processor group consumes events: a running
// processor maps against the states being moved, and its writes after their move would stay in
// the partition they left. Members consuming another deployment's events topic (another
// ERPSTREAM_TOPIC_PREFIX on the same cluster shares the group's name) do not count.
func processorsStopped(ctx context.Context, adm *kadm.Client, events string) error {
	groups, err := adm.DescribeGroups(ctx, DefaultGroup)
	if err != nil {
		return fmt.Errorf("describe group %s: %w", DefaultGroup, err)
	}
	g, ok := groups[DefaultGroup]
	if !ok {
		return nil
	}
	var names []string
	for _, m := range g.Members {
		if c, ok := m.Join.AsConsumer(); ok && !slices.Contains(c.Topics, events) {
			continue
		}
		names = append(names, m.ClientID+" on "+m.ClientHost)
	}
	if len(names) == 0 {
		return nil
	}
	return fmt.Errorf("stop every processor first: group %s has %d member(s) consuming %s (%s); a killed one leaves it within 15 s",
		DefaultGroup, len(names), events, strings.Join(names, ", "))
}
