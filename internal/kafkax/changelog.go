package kafkax

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ChangelogOpts are the options of a client that restores state from a compacted changelog
// topic: read committed, and with control records kept, so that the reader can tell it reached
// the last stable offset even when the topic ends in transaction markers (which are offsets
// but never records otherwise).
func ChangelogOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxWait(250 * time.Millisecond),
	}
}

// CatchUp polls cl, a client made with ChangelogOpts that consumes topic from the start, until
// every partition of partitions (all when nil) reached its last stable offset as of the call,
// handing each data record to apply. Broker errors are waited out: it returns only when caught
// up or when ctx ends, so a restore never finishes with half the state.
func CatchUp(ctx context.Context, cl *kgo.Client, log *slog.Logger, topic string, partitions []int32, apply func(*kgo.Record)) (records int, err error) {
	return CatchUpFrom(ctx, cl, log, topic, partitions, nil, apply)
}

// CatchUpFrom is CatchUp for a client that starts each partition at from[partition] (a local
// store's checkpoint): a partition already read to its last stable offset is caught up.
func CatchUpFrom(ctx context.Context, cl *kgo.Client, log *slog.Logger, topic string, partitions []int32, from map[int32]int64,
	apply func(*kgo.Record)) (records int, err error) {
	ends, err := stableEnds(ctx, cl, log, topic, partitions)
	if err != nil {
		return 0, err
	}
	for p, end := range ends {
		if at, ok := from[p]; ok && at >= end {
			delete(ends, p)
		}
	}
	for len(ends) > 0 {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return records, ctx.Err()
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if !r.Attrs.IsControl() {
				records++
				apply(r)
			}
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				delete(ends, r.Partition)
			}
		})
	}
	return records, nil
}

// stableEnds lists the last stable offsets of the partitions that hold anything, retrying
// while the broker is unreachable.
func stableEnds(ctx context.Context, cl *kgo.Client, log *slog.Logger, topic string, partitions []int32) (map[int32]int64, error) {
	adm := kadm.NewClient(cl)
	backoff := 100 * time.Millisecond
	for {
		ends, err := func() (map[int32]int64, error) {
			lso, err := adm.ListCommittedOffsets(ctx, topic)
			if err != nil {
				return nil, err
			}
			starts, err := adm.ListStartOffsets(ctx, topic)
			if err != nil {
				return nil, err
			}
			if err := errors.Join(lso.Error(), starts.Error()); err != nil {
				return nil, err
			}
			want := map[int32]bool{}
			for _, p := range partitions {
				want[p] = true
			}
			out := map[int32]int64{}
			lso.Each(func(o kadm.ListedOffset) {
				if o.Topic != topic || partitions != nil && !want[o.Partition] {
					return
				}
				if b, ok := starts.Lookup(topic, o.Partition); ok && o.Offset > b.Offset {
					out[o.Partition] = o.Offset
				}
			})
			return out, nil
		}()
		if err == nil {
			return ends, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		backoff = min(backoff, 5*time.Second)
		log.Warn("cannot list the offsets of a changelog topic; retrying", "topic", topic, "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, fmt.Errorf("offsets of %s: %w", topic, ctx.Err())
		}
		backoff *= 2
	}
}
