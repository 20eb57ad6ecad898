package app

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

const (
	// backlogSample is how many waiting events status reads of a lagging events partition to
	// say whose they are (about 1 KB each).
	backlogSample = 10_000
	// backlogPartitions is how many of the partitions lagging most status reads.
	backlogPartitions = 2
	// backlogOrgs is how many orgs a backlog line names; the rest are summed up.
	backlogOrgs = 3
)

// backlogByOrg writes whose events wait in the events partitions lagging most: the orgs of the
// first backlogSample events after the processors' committed offset. Orgs that share a partition
// share its order (docs/scaling.md), so this names the org a backlog belongs to: the one to pin to
// a partition of its own when it is more than a burst.
func backlogByOrg(ctx context.Context, kc kafkax.Config, log *slog.Logger, out io.Writer, topic string, lags map[int32]kadm.GroupMemberLag) {
	parts := make([]int32, 0, len(lags))
	for p, l := range lags {
		if l.Err == nil && l.Lag > 1 { // a forwarded event's transaction leaves a marker
			parts = append(parts, p)
		}
	}
	slices.SortFunc(parts, func(a, b int32) int {
		if c := cmp.Compare(lags[b].Lag, lags[a].Lag); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	for _, p := range parts[:min(backlogPartitions, len(parts))] {
		l := lags[p]
		from := l.Commit.At
		if from < 0 { // nothing committed yet: the group starts at the beginning
			from = l.Start.Offset
		}
		orgs, read, err := sampleOrgs(ctx, kc, log, topic, p, from, l.End.Offset)
		if err != nil {
			fmt.Fprintf(out, "  backlog %s partition %d: not read (%v)\n", topic, p, err)
			continue
		}
		fmt.Fprintf(out, "  backlog %s partition %d: of the first %d waiting, %s\n", topic, p, read, describeOrgs(orgs))
	}
}

// sampleOrgs counts the orgs of up to backlogSample committed records of one partition from
// offset from (before end), reading for at most five seconds.
func sampleOrgs(ctx context.Context, kc kafkax.Config, log *slog.Logger, topic string, part int32, from, end int64) (map[string]int, int, error) {
	cl, err := kgo.NewClient(append(kc.BaseOpts(log),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {part: kgo.NewOffset().At(from)}}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxPartitionBytes(16<<20))...)
	if err != nil {
		return nil, 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	orgs := map[string]int{}
	read := 0
	for read < backlogSample {
		// A poll that brings nothing for a second is the end: the records left before end are
		// transaction markers or aborted forwards, which a read-committed fetch skips.
		pollCtx, stop := context.WithTimeout(ctx, time.Second)
		fs := cl.PollRecords(pollCtx, backlogSample-read)
		stop()
		if fs.NumRecords() == 0 {
			break
		}
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end || read >= backlogSample {
				done = true
				return
			}
			read++
			orgs[orgOfEvent(r)]++
			done = done || r.Offset >= end-1
		})
		if done {
			break
		}
	}
	if read == 0 {
		return nil, 0, fmt.Errorf("no events read in %s", time.Second)
	}
	return orgs, read, nil
}

// orgOfEvent is the org an events record names in its header (its key begins with it too).
func orgOfEvent(r *kgo.Record) string {
	for _, h := range r.Headers {
		if h.Key == envelope.HeaderOrg {
			return string(h.Value)
		}
	}
	org, _, _ := strings.Cut(string(r.Key), "/")
	return org
}

// describeOrgs names the orgs with the most events, most first: "org big 9800, org acme 150,
// 2 more orgs 50".
func describeOrgs(orgs map[string]int) string {
	names := make([]string, 0, len(orgs))
	for o := range orgs {
		names = append(names, o)
	}
	slices.SortFunc(names, func(a, b string) int {
		if c := cmp.Compare(orgs[b], orgs[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	parts := make([]string, 0, backlogOrgs+1)
	for _, o := range names[:min(backlogOrgs, len(names))] {
		parts = append(parts, fmt.Sprintf("org %s %d", o, orgs[o]))
	}
	if rest := names[min(backlogOrgs, len(names)):]; len(rest) > 0 {
		n := 0
		for _, o := range rest {
			n += orgs[o]
		}
		noun := "orgs"
		if len(rest) == 1 {
			noun = "org"
		}
		parts = append(parts, fmt.Sprintf("%d more %s %d", len(rest), noun, n))
	}
	return strings.Join(parts, ", ")
}
