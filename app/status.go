package app

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sort"
	"strconv"
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
// each consumer group's members and lag, and which processor instance maps; for each of orgs
// (erpstream status --org O), the events partition its events go to, the instance mapping it and
// that partition's lag.
func Status(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer, orgs ...string) error {
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
	topics := cfg.Kafka.Topics()
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
	counts := map[string]int{}
	for n, d := range details {
		if d.Err == nil {
			counts[n] = len(d.Partitions)
		}
	}
	for _, w := range coPartitioningWarnings(topics, counts) {
		fmt.Fprintf(out, "  WARNING %s\n", w)
	}
	lags, err := adm.Lag(ctx, processor.DefaultGroup, projector.DefaultGroup, outbound.DefaultGroup)
	if err != nil {
		return fmt.Errorf("consumer groups: %w", err)
	}
	consumed := map[string][]string{
		processor.DefaultGroup: {topics.Events},
		projector.DefaultGroup: {topics.Entities, topics.Monitoring, topics.Events, topics.Access},
	}
	for g, ts := range consumed {
		if l, ok := lags[g]; ok && l.Error() == nil {
			if l.Lag == nil {
				l.Lag = kadm.GroupLag{}
				lags[g] = l
			}
			if err := kafkax.FillNeverCommitted(ctx, adm, l.Lag, ts...); err != nil {
				fmt.Fprintf(out, "group %s: lag of the partitions it never committed: %v\n", g, err)
			}
		}
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
		byTopic := map[string]map[int32]int64{}
		for _, parts := range l.Lag {
			for _, p := range parts {
				if ours[p.Topic] && p.Lag > 1 { // a transactional topic ends in an uncommitted marker
					if byTopic[p.Topic] == nil {
						byTopic[p.Topic] = map[int32]int64{}
					}
					byTopic[p.Topic][p.Partition] = p.Lag
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
						assigned = append(assigned, assignedPartitions(t.Topic, t.Partitions))
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
			fmt.Fprintf(out, "  lag %-30s %s\n", t, partitionLags(byTopic[t]))
		}
		if g == processor.DefaultGroup {
			backlogByOrg(ctx, cfg.Kafka, log, out, topics.Events, l.Lag[topics.Events])
		}
	}
	if l := lags[processor.DefaultGroup]; l.Error() == nil {
		orgPlacement(out, orgs, topics, cfg.MapAheadOrgs, len(details[topics.Events].Partitions), l)
	}
	heldOrgs(ctx, cfg.Kafka, log, out, topics.OrgLoad, time.Now())
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

// assignedPartitions names a member's partitions of a topic, so an operator can tell which
// instance holds a lagging partition (an org's events are all in one).
func assignedPartitions(topic string, partitions []int32) string {
	sorted := slices.Clone(partitions)
	slices.Sort(sorted)
	nums := make([]string, len(sorted))
	for i, p := range sorted {
		nums[i] = strconv.Itoa(int(p))
	}
	return fmt.Sprintf("%s×%d [%s]", topic, len(sorted), strings.Join(nums, " "))
}

// partitionLags is a topic's lag in all and, when more than one partition lags, the partitions
// with the most (four at most): a hot org shows as one partition far behind the others.
func partitionLags(lags map[int32]int64) string {
	var total int64
	parts := make([]int32, 0, len(lags))
	for p, n := range lags {
		total += n
		parts = append(parts, p)
	}
	text := strconv.FormatInt(total, 10)
	if len(parts) < 2 {
		for _, p := range parts {
			text += fmt.Sprintf(" (partition %d)", p)
		}
		return text
	}
	slices.SortFunc(parts, func(a, b int32) int {
		if c := cmp.Compare(lags[b], lags[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	most := make([]string, 0, 4)
	for _, p := range parts[:min(4, len(parts))] {
		most = append(most, fmt.Sprintf("partition %d: %d", p, lags[p]))
	}
	if len(parts) > 4 {
		most = append(most, fmt.Sprintf("%d more", len(parts)-4))
	}
	return text + " (" + strings.Join(most, ", ") + ")"
}

// coPartitioningWarnings names the topics whose partition count is not the events topic's: a
// partition change half done (docs/scaling.md, "Adding partitions").
func coPartitioningWarnings(topics kafkax.Topics, partitions map[string]int) []string {
	events, ok := partitions[topics.Events]
	if !ok {
		return nil
	}
	var out []string
	for _, name := range []string{topics.EntityState, topics.Dedup} {
		if n, ok := partitions[name]; ok && n != events {
			out = append(out, fmt.Sprintf("%s has %d partitions, %s %d: they must be equal. Services started before the change "+
				"place orgs among the partitions they started with; a service starting now is refused. Finish the change with "+
				"the processors stopped: erpstream admin partitions %d (docs/scaling.md, \"Adding partitions\")",
				name, n, topics.Events, events, max(n, events)))
		}
	}
	return out
}

// orgPlacement writes, per org, its events partition (pinned, or the org's hash:
// Topics.OrgPartition), the processor member holding it and its lag: where to look when one
// org's events are late.
func orgPlacement(out io.Writer, orgs []string, topics kafkax.Topics, mapAhead map[string]bool, partitions int, l kadm.DescribedGroupLag) {
	eventsTopic := topics.Events
	for _, org := range orgs {
		if partitions == 0 {
			fmt.Fprintf(out, "org %s: topic %s missing\n", org, eventsTopic)
			continue
		}
		part := topics.OrgPartition([]byte(org), int32(partitions))
		how := ""
		if _, pinned := topics.Placement[org]; pinned {
			how = " (pinned)"
		}
		if topics.Spreads(org) {
			how += " (spread: its events are mapped in every partition and applied in this one)"
		}
		if mapAhead[org] {
			how += " (mapped ahead: the other processor instances map its events, this partition's holder applies them in order)"
		}
		holder := "no member (the processors are down or rebalancing)"
		for _, m := range l.Members {
			if a, ok := m.Assigned.AsConsumer(); ok {
				for _, t := range a.Topics {
					if t.Topic == eventsTopic && slices.Contains(t.Partitions, part) {
						holder = fmt.Sprintf("member %s (%s on %s)", m.ClientID, shortID(m.MemberID), m.ClientHost)
					}
				}
			}
		}
		lag := "unknown"
		if pl, ok := l.Lag[eventsTopic][part]; ok && pl.Err == nil {
			n := pl.Lag
			if n == 1 { // a processor's copies (forwarded, mapped away) end in a commit marker: no work left
				n = 0
			}
			lag = strconv.FormatInt(n, 10)
		}
		fmt.Fprintf(out, "org %s: %s partition %d of %d%s, mapped by %s, lag %s\n", org, eventsTopic, part, partitions, how, holder, lag)
	}
}
