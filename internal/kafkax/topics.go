// Package kafkax declares erpstream's Kafka topics and builds clients for them.
package kafkax

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// TopicSpec is one topic erpstream owns. Every service verifies its topics at start-up and
// refuses to run against a topic whose partitioning or cleanup policy contradicts the spec.
type TopicSpec struct {
	Name       string
	Partitions int32 // 0: the configured default for data topics
	Configs    map[string]string
	// ExactPartitions: the partition count is part of the design (the config log must be one
	// ordered log), not a scaling knob, so any other count is refused.
	ExactPartitions bool
	// SamePartitionsAs names a topic this one is co-partitioned with: state for partition p of
	// that topic lives in partition p of this one, so the counts must stay equal.
	SamePartitionsAs string
	Purpose          string
}

// Topic names. The prefix (default "erp") lets several deployments share one cluster.
type Topics struct {
	Events     string
	Entities   string
	Monitoring string
	Config     string
	Dedup      string
	Access     string
	// EntityState is the processor's entity state: existence, deletion and relations per entity.
	EntityState string
	// OutboundRetries are the outbound retry topics, one per delay of OutboundRetryDelays: a
	// failed delivery waits in the topic of its next delay, so every topic's records come due
	// in about the order they were written and a consumer waits only for the head of each.
	OutboundRetries []string
	// OutboundDead holds deliveries that failed their last attempt, for redelivery.
	OutboundDead string
	// Acks is the acknowledgement table: pending ack ids (compacted, keyed by ack id).
	Acks string
	// OrgLoad is what the processors say of orgs whose mapping takes more than their share
	// while other orgs wait (compacted, keyed by org); ingest holds such an org's new events back.
	OrgLoad string
	// Extractions are map-ahead orgs' events mapped by the instances that do not apply them
	// (keyed by events partition and offset, kept an hour): a cache the applying instance takes
	// extractions from instead of mapping the events itself.
	Extractions string
	// Placement pins orgs to events partitions of their own (nil: every org is hashed); set it
	// with WithPlacement.
	Placement Placement
	// Spread are the orgs whose events are mapped by every processor instance (nil: none); set
	// it with WithSpread.
	Spread map[string]bool
	pinned []int32 // Placement's partitions, distinct and ascending
	// placedAmong is the events partition count this process verified at start (0: not known);
	// set it with PlacedAmong.
	placedAmong int32
}

// OutboundRetryDelays are the waits before the 2nd to 6th attempt of a delivery; the 7th waits
// the last delay again. About 9 hours from the first attempt to the last.
var OutboundRetryDelays = []time.Duration{10 * time.Second, time.Minute, 10 * time.Minute, time.Hour, 4 * time.Hour}

func retryTopicName(prefix string, d time.Duration) string {
	var name string
	switch {
	case d%time.Hour == 0:
		name = strconv.Itoa(int(d/time.Hour)) + "h"
	case d%time.Minute == 0:
		name = strconv.Itoa(int(d/time.Minute)) + "m"
	default:
		name = strconv.Itoa(int(d/time.Second)) + "s"
	}
	return prefix + ".outbound-retry-" + name
}

// NewTopics names the topics under prefix.
func NewTopics(prefix string) Topics {
	if prefix == "" {
		prefix = "erp"
	}
	return Topics{
		Events:     prefix + ".events",
		Entities:   prefix + ".entities",
		Monitoring: prefix + ".monitoring",
		Config:     prefix + ".config",
		Dedup:      prefix + ".dedup",
		Access:     prefix + ".access",

		EntityState: prefix + ".entity-state",

		OutboundRetries: retryTopics(prefix),
		OutboundDead:    prefix + ".outbound-dead",
		Acks:            prefix + ".acks",
		OrgLoad:         prefix + ".org-load",
		Extractions:     prefix + ".extractions",
	}
}

func retryTopics(prefix string) []string {
	out := make([]string, len(OutboundRetryDelays))
	for i, d := range OutboundRetryDelays {
		out[i] = retryTopicName(prefix, d)
	}
	return out
}

const day = 24 * 60 * 60 * 1000

// Specs is the table of topics: their partitioning, retention and cleanup policy.
//
// The events topic is shared by all use cases, keyed "<org>/<integration>/<use case>/<spread>"
// (spread: the deduplication id, else the event id) and partitioned by the org alone
// (Topics.Partitioner): an org's events are in one partition in the order they were accepted,
// with its deduplication marks and entity states in the same partition of their topics, so the
// processor instance owning the partition holds all the state the org's events need. Entity
// writes are keyed by entity id and versioned by receive time.
func (t Topics) Specs(dataPartitions int32) []TopicSpec {
	specs := []TopicSpec{
		{Name: t.Events, Partitions: dataPartitions, Purpose: "accepted ERP events",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(7 * day), "max.message.bytes": "8388608"}},
		{Name: t.Entities, Partitions: dataPartitions, Purpose: "entity writes keyed by entity id",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(7 * day), "max.message.bytes": "8388608"}},
		{Name: t.Monitoring, Partitions: dataPartitions, Purpose: "monitoring events keyed by event id",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(3 * day)}},
		{Name: t.Access, Partitions: dataPartitions, Purpose: "API access log",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(3 * day)}},
		{Name: t.Dedup, Partitions: dataPartitions, SamePartitionsAs: t.Events, Purpose: "deduplication marks (24 h window), co-partitioned with events",
			Configs: map[string]string{"cleanup.policy": "compact,delete", "retention.ms": strconv.Itoa(25 * 60 * 60 * 1000),
				"segment.ms": strconv.Itoa(60 * 60 * 1000), "min.compaction.lag.ms": "0"}},
		{Name: t.EntityState, Partitions: dataPartitions, SamePartitionsAs: t.Events, Purpose: "entity state the processor applies relations and modes with (compacted, keyed by entity id, co-partitioned with events: an org's states in its events partition)",
			Configs: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": strconv.Itoa(day),
				"max.message.bytes": "8388608"}},
		{Name: t.Config, Partitions: 1, ExactPartitions: true, Purpose: "integrations and use cases (compacted log)",
			Configs: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": strconv.Itoa(day)}},
		{Name: t.OutboundDead, Partitions: dataPartitions, Purpose: "outbound deliveries that failed their last attempt (14 days, for redelivery)",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(14 * day), "max.message.bytes": "8388608"}},
		{Name: t.Acks, Partitions: dataPartitions, SamePartitionsAs: t.Entities, Purpose: "pending outbound acknowledgements (compacted, keyed by ack id)",
			Configs: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": strconv.Itoa(60 * 60 * 1000)}},
		{Name: t.OrgLoad, Partitions: 1, ExactPartitions: true, Purpose: "orgs whose mapping takes more than their share while others wait (compacted, keyed by org)",
			Configs: map[string]string{"cleanup.policy": "compact", "min.compaction.lag.ms": "0", "segment.ms": strconv.Itoa(60 * 60 * 1000)}},
	}
	specs = append(specs, TopicSpec{Name: t.Extractions, Partitions: dataPartitions,
		Purpose: "map-ahead orgs' events mapped ahead of the instance applying them (a cache keyed by events partition and offset, an hour)",
		Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(60 * 60 * 1000), "segment.ms": strconv.Itoa(10 * 60 * 1000),
			"max.message.bytes": "8388608"}})
	for i, name := range t.OutboundRetries {
		// A retry waits its delay and then some: kept for a day past the longest delay.
		specs = append(specs, TopicSpec{Name: name, Partitions: dataPartitions,
			Purpose: "outbound deliveries waiting " + OutboundRetryDelays[i].String() + " for their next attempt",
			Configs: map[string]string{"cleanup.policy": "delete", "retention.ms": strconv.Itoa(day + int(OutboundRetryDelays[len(OutboundRetryDelays)-1].Milliseconds())),
				"max.message.bytes": "8388608"}})
	}
	return specs
}

// EnsureTopics creates missing topics with their configs and verifies existing ones.
func EnsureTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec, replication int16) error {
	// Listing all topics instead of naming them: naming a missing topic makes the client retry
	// its metadata request for seconds before it reports the topic as missing.
	details, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	// Topics created here carry the spec's settings; the others are verified against it.
	var existing []TopicSpec
	for _, s := range specs {
		if d, ok := details[s.Name]; ok && d.Err == nil {
			existing = append(existing, s)
			continue
		}
		cfg := make(map[string]*string, len(s.Configs)+1)
		for k, v := range s.Configs {
			cfg[k] = kadm.StringPtr(v)
		}
		if replication > 1 {
			cfg["min.insync.replicas"] = kadm.StringPtr(strconv.Itoa(int(replication) - 1))
		}
		resp, err := adm.CreateTopic(ctx, s.Partitions, replication, cfg, s.Name)
		if err == nil {
			err = resp.Err
		}
		switch {
		case errors.Is(err, kerr.TopicAlreadyExists):
			existing = append(existing, s) // another process won the race: verify what it made
		case err != nil:
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
	}
	if len(existing) == 0 {
		return nil
	}
	// Metadata of a topic another process just created can lag; retry while it reads as missing.
	var verr error
	for attempt := 0; attempt < 50; attempt++ {
		verr = VerifyTopics(ctx, adm, existing)
		if verr == nil || !errors.Is(verr, errMissingTopic) {
			return verr
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
			return verr
		}
	}
	return verr
}

var errMissingTopic = errors.New("topic missing")

// VerifyTopics checks that every topic exists with the partitioning and cleanup policy its spec asks.
func VerifyTopics(ctx context.Context, adm *kadm.Client, specs []TopicSpec) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	details, err := adm.ListTopics(ctx)
	if err != nil {
		return fmt.Errorf("list topics: %w", err)
	}
	var present []string
	for _, n := range names {
		if d, ok := details[n]; ok && d.Err == nil {
			present = append(present, n)
		}
	}
	configs, err := adm.DescribeTopicConfigs(ctx, present...)
	if err != nil {
		return fmt.Errorf("describe topic configs: %w", err)
	}
	var problems []string
	missing := false
	for _, s := range specs {
		d, ok := details[s.Name]
		if !ok || d.Err != nil {
			problems = append(problems, fmt.Sprintf("%s: missing (run `erpstream admin ensure-topics`)", s.Name))
			missing = true
			continue
		}
		if n := int32(len(d.Partitions)); s.ExactPartitions && n != s.Partitions {
			problems = append(problems, fmt.Sprintf("%s: has %d partitions, must have exactly %d", s.Name, n, s.Partitions))
		}
		if other, ok := details[s.SamePartitionsAs]; s.SamePartitionsAs != "" && ok && len(other.Partitions) != len(d.Partitions) {
			problems = append(problems, fmt.Sprintf("%s: has %d partitions but %s has %d; they must stay equal (co-partitioned)",
				s.Name, len(d.Partitions), s.SamePartitionsAs, len(other.Partitions)))
		}
		want := s.Configs["cleanup.policy"]
		rc, err := configs.On(s.Name, nil)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: describe configs: %v", s.Name, err))
			continue
		}
		for _, c := range rc.Configs {
			if c.Key == "cleanup.policy" && c.Value != nil && !samePolicy(*c.Value, want) {
				problems = append(problems, fmt.Sprintf("%s: cleanup.policy is %q, must be %q", s.Name, *c.Value, want))
			}
		}
	}
	if len(problems) > 0 {
		err := fmt.Errorf("kafka topics do not match erpstream's topic table: %s", strings.Join(problems, "; "))
		if missing {
			err = fmt.Errorf("%w: %w", errMissingTopic, err)
		}
		return err
	}
	return nil
}

func samePolicy(have, want string) bool {
	norm := func(s string) string {
		parts := strings.Split(strings.ReplaceAll(s, " ", ""), ",")
		for i := 0; i < len(parts); i++ {
			for j := i + 1; j < len(parts); j++ {
				if parts[j] < parts[i] {
					parts[i], parts[j] = parts[j], parts[i]
				}
			}
		}
		return strings.Join(parts, ",")
	}
	return norm(have) == norm(want)
}
