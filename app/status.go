package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/chx"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/outbound"
	"github.com/erpstream/erpstream/processor"
	"github.com/erpstream/erpstream/projector"
	"github.com/erpstream/erpstream/projector/schema"
)

// Status writes what an operator asks first (erpstream status): the topics, the schema version,
// each consumer group's members and lag, and which processor instance maps.
func Status(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	if len(cfg.Kafka.Brokers) == 0 {
		return fmt.Errorf("KAFKA_BROKERS is required for status")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cl, err := kgo.NewClient(cfg.Kafka.BaseOpts(log)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := kafkax.NewTopics(cfg.Kafka.TopicPrefix)
	specs := topics.Specs(0)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("kafka %v: %w", cfg.Kafka.Brokers, err)
	}
	fmt.Fprintf(out, "kafka %s\n", strings.Join(cfg.Kafka.Brokers, ","))
	for _, n := range names {
		if d, ok := details[n]; ok && d.Err == nil {
			fmt.Fprintf(out, "  topic %-28s %d partitions\n", n, len(d.Partitions))
		} else {
			fmt.Fprintf(out, "  topic %-28s MISSING (erpstream admin ensure-topics)\n", n)
		}
	}
	lags, err := adm.Lag(ctx, processor.DefaultGroup, projector.DefaultGroup, outbound.DefaultGroup)
	if err != nil {
		return fmt.Errorf("consumer groups: %w", err)
	}
	ours := map[string]bool{}
	for _, n := range names {
		ours[n] = true
	}
	for _, g := range []string{processor.DefaultGroup, projector.DefaultGroup, outbound.DefaultGroup} {
		l := lags[g]
		if err := l.Error(); err != nil {
			fmt.Fprintf(out, "group %s: %v\n", g, err)
			continue
		}
		byTopic := map[string]int64{}
		for _, parts := range l.Lag {
			for _, p := range parts {
				if ours[p.Topic] && p.Lag > 1 { // a transactional topic ends in an uncommitted marker
					byTopic[p.Topic] += p.Lag
				}
			}
		}
		fmt.Fprintf(out, "group %s: %s, %d member(s)\n", g, l.State, len(l.Members))
		for _, m := range l.Members {
			role := ""
			if a, ok := m.Assigned.AsConsumer(); ok {
				var assigned []string
				for _, t := range a.Topics {
					if ours[t.Topic] {
						assigned = append(assigned, fmt.Sprintf("%s×%d", t.Topic, len(t.Partitions)))
					}
				}
				if len(assigned) > 0 {
					role = "assigned " + strings.Join(assigned, ", ")
				} else if j, ok := m.Join.AsConsumer(); ok && !subscribes(j.Topics, ours) {
					role = "(another deployment sharing the group name)"
				} else if g == processor.DefaultGroup {
					role = "idle (more processor instances than events partitions)"
				}
			}
			fmt.Fprintf(out, "  member %s (%s on %s) %s\n", m.ClientID, shortID(m.MemberID), m.ClientHost, role)
		}
		topicsWithLag := make([]string, 0, len(byTopic))
		for t := range byTopic {
			topicsWithLag = append(topicsWithLag, t)
		}
		sort.Strings(topicsWithLag)
		if len(topicsWithLag) == 0 {
			fmt.Fprintln(out, "  lag 0")
		}
		for _, t := range topicsWithLag {
			fmt.Fprintf(out, "  lag %-30s %d\n", t, byTopic[t])
		}
	}
	conn, err := chx.Open(ctx, cfg.ClickHouse)
	if err != nil {
		fmt.Fprintf(out, "clickhouse %s: %v\n", cfg.ClickHouse.Addr, err)
		return nil
	}
	defer conn.Close()
	current, latest, err := schema.Applied(ctx, conn)
	switch {
	case err != nil:
		fmt.Fprintf(out, "clickhouse %s/%s: %v (erpstream admin migrate)\n", cfg.ClickHouse.Addr, cfg.ClickHouse.Database, err)
	case current < latest:
		fmt.Fprintf(out, "clickhouse %s/%s: schema %d of %d (erpstream admin migrate)\n", cfg.ClickHouse.Addr, cfg.ClickHouse.Database, current, latest)
	default:
		fmt.Fprintf(out, "clickhouse %s/%s: schema %d, up to date\n", cfg.ClickHouse.Addr, cfg.ClickHouse.Database, current)
	}
	return nil
}

func subscribes(topics []string, ours map[string]bool) bool {
	for _, t := range topics {
		if ours[t] {
			return true
		}
	}
	return false
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[len(id)-12:]
	}
	return id
}
