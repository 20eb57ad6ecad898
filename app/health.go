package app

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/erpstream/erpstream/internal/kafkax"
)

// readiness is what /readyz answers: every service of the process has started, Kafka answers,
// ClickHouse answers where a service needs it, and every consumer group the process runs has a
// member and makes progress while it has lag. /livez only says the process serves requests.
type readiness struct {
	started  atomic.Bool
	progress *kafkax.LagMonitor // nil: the process runs no consumer group

	mu   sync.Mutex
	deps map[string]error // the last probe of each dependency
}

func newReadiness() *readiness { return &readiness{deps: map[string]error{}} }

// probe checks a dependency now and then every interval until ctx ends.
func (r *readiness) probe(ctx context.Context, name string, interval time.Duration, check func(context.Context) error) {
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		r.mu.Lock()
		r.deps[name] = err
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(interval):
		}
	}
}

func (r *readiness) check() error {
	if !r.started.Load() {
		return errors.New("starting")
	}
	r.mu.Lock()
	var problems []string
	for name, err := range r.deps {
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s unreachable: %v", name, err))
		}
	}
	r.mu.Unlock()
	sort.Strings(problems)
	if r.progress != nil {
		if err := r.progress.Check(); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
