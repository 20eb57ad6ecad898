package outbound

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// DefaultProjectorGroup is the projector's consumer group (projector.DefaultGroup).
const DefaultProjectorGroup = "erpstream-projector"

// projectedWatch follows the projector's committed offsets on the entities topic. The projector
// commits only after ClickHouse took the batch, so once its offset of partition p passed a write,
// that write is in ClickHouse: a change is read from ClickHouse once, when it is there, instead
// of by polling the tables.
type projectedWatch struct {
	adm   *kadm.Client
	group string
	topic string
	every time.Duration

	mu        sync.Mutex
	committed map[int32]int64
	changed   chan struct{} // closed and replaced on every change
}

func newProjectedWatch(adm *kadm.Client, group, topic string) *projectedWatch {
	return &projectedWatch{adm: adm, group: group, topic: topic, every: 100 * time.Millisecond,
		committed: map[int32]int64{}, changed: make(chan struct{})}
}

func (w *projectedWatch) run(ctx context.Context) {
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		offsets, err := w.adm.FetchOffsets(ctx, w.group)
		if err == nil {
			w.mu.Lock()
			moved := false
			offsets.Each(func(o kadm.OffsetResponse) {
				if o.Topic == w.topic && o.Err == nil && o.At > w.committed[o.Partition] {
					w.committed[o.Partition], moved = o.At, true
				}
			})
			if moved {
				close(w.changed)
				w.changed = make(chan struct{})
			}
			w.mu.Unlock()
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// wait blocks until the projector committed past every offset in upTo (partition -> offset), or
// until deadline; it reports whether they were all passed.
func (w *projectedWatch) wait(ctx context.Context, upTo map[int32]int64, deadline time.Time) bool {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	for {
		w.mu.Lock()
		done := true
		for p, off := range upTo {
			if w.committed[p] <= off {
				done = false
				break
			}
		}
		changed := w.changed
		w.mu.Unlock()
		if done {
			return true
		}
		select {
		case <-changed:
		case <-timer.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
}
