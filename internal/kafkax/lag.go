package kafkax

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// LagMonitor watches consumer groups from the outside, through the broker's view of their
// committed offsets: a consumer that blocks inside the client makes no noise of its own, so
// only this view catches it. A group is stalled when it has lag and its commits have not moved
// for StallAfter; readiness reports it and erpstream_consumer_stalled says so.
type LagMonitor struct {
	Client     *kgo.Client
	Groups     []string
	Interval   time.Duration // default 5 s
	StallAfter time.Duration // default 30 s
	Log        *slog.Logger

	lag     *prometheus.GaugeVec
	stalled *prometheus.GaugeVec

	mu     sync.Mutex
	groups map[string]*groupProgress
	now    func() time.Time
}

type groupProgress struct {
	commits  int64 // sum of committed offsets at the last change
	movedAt  time.Time
	lag      int64
	err      error
	errSince time.Time
	members  int       // members the broker reports in the group
	lonely   time.Time // since when the group has had no member (zero: it has members)
}

// NewLagMonitor registers the monitor's metrics.
func NewLagMonitor(cl *kgo.Client, groups []string, log *slog.Logger, reg prometheus.Registerer) (*LagMonitor, error) {
	m := &LagMonitor{Client: cl, Groups: groups, Log: log, groups: map[string]*groupProgress{}, now: time.Now,
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "erpstream_consumer_lag",
			Help: "Records a consumer group has yet to process, by group and topic (transaction markers not counted)."}, []string{"group", "topic"}),
		stalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "erpstream_consumer_stalled",
			Help: "1 while a consumer group has lag and its commits have not moved for the stall threshold."}, []string{"group"}),
	}
	for _, c := range []prometheus.Collector{m.lag, m.stalled} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("lag metrics: %w", err)
		}
	}
	return m, nil
}

// Run measures until ctx ends.
func (m *LagMonitor) Run(ctx context.Context) error {
	interval := m.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		m.measure(ctx)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (m *LagMonitor) measure(ctx context.Context) {
	mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	lags, err := kadm.NewClient(m.Client).Lag(mctx, m.Groups...)
	now := m.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, g := range m.Groups {
		st := m.groups[g]
		if st == nil {
			st = &groupProgress{movedAt: now, commits: -1}
			m.groups[g] = st
		}
		gerr := err
		var l kadm.DescribedGroupLag
		if gerr == nil {
			l = lags[g]
			gerr = l.Error()
		}
		if gerr != nil {
			if st.err == nil {
				st.errSince = now
			}
			st.err = gerr
			continue
		}
		st.err = nil
		st.members = len(l.Members)
		switch {
		case st.members > 0:
			st.lonely = time.Time{}
		case st.lonely.IsZero():
			st.lonely = now
		}
		var commits, total int64
		byTopic := map[string]int64{}
		for _, parts := range l.Lag {
			for _, p := range parts {
				commits += max(p.Commit.At, 0)
				// A transactional topic ends in a commit marker the consumer never commits past:
				// one offset of lag per partition is no work left.
				if p.Lag > 1 {
					byTopic[p.Topic] += p.Lag
					total += p.Lag
				} else if _, ok := byTopic[p.Topic]; !ok {
					byTopic[p.Topic] = 0
				}
			}
		}
		for topic, n := range byTopic {
			m.lag.WithLabelValues(g, topic).Set(float64(n))
		}
		if commits != st.commits || total == 0 {
			st.commits, st.movedAt = commits, now
		}
		st.lag = total
		stalled := 0.0
		if m.stalledLocked(st, now) {
			stalled = 1
		}
		m.stalled.WithLabelValues(g).Set(stalled)
	}
}

func (m *LagMonitor) stallAfter() time.Duration {
	if m.StallAfter <= 0 {
		return 30 * time.Second
	}
	return m.StallAfter
}

func (m *LagMonitor) stalledLocked(st *groupProgress, now time.Time) bool {
	return st.lag > 0 && now.Sub(st.movedAt) >= m.stallAfter()
}

// Check is nil while every group has a member and progresses; otherwise it says which do not
// and why.
func (m *LagMonitor) Check() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	var problems []string
	for g, st := range m.groups {
		switch {
		case st.err != nil && now.Sub(st.errSince) >= m.stallAfter():
			problems = append(problems, fmt.Sprintf("%s: lag unknown for %s: %v", g, now.Sub(st.errSince).Round(time.Second), st.err))
		case m.stalledLocked(st, now):
			problems = append(problems, fmt.Sprintf("%s: %d records behind and no commit for %s", g, st.lag, now.Sub(st.movedAt).Round(time.Second)))
		case !st.lonely.IsZero() && now.Sub(st.lonely) >= m.stallAfter():
			problems = append(problems, fmt.Sprintf("%s: no consumer has joined the group for %s", g, now.Sub(st.lonely).Round(time.Second)))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("consumers not progressing: %s", strings.Join(problems, "; "))
}

// FillNeverCommitted adds to a group's lag, as kadm computes it, the partitions of topics that
// it lacks: those the group never committed and no member holds. kadm leaves them out when the
// group has no members (every processor stopped, a partition that never had events before), yet
// the group starts such a partition at its first record, so all of its records wait.
func FillNeverCommitted(ctx context.Context, adm *kadm.Client, lag kadm.GroupLag, topics ...string) error {
	starts, err := adm.ListStartOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	ends, err := adm.ListEndOffsets(ctx, topics...)
	if err != nil {
		return err
	}
	for _, t := range topics {
		for p, end := range ends[t] {
			if _, ok := lag[t][p]; ok {
				continue
			}
			if lag[t] == nil {
				lag[t] = map[int32]kadm.GroupMemberLag{}
			}
			start := starts[t][p]
			l := kadm.GroupMemberLag{Topic: t, Partition: p, Commit: kadm.Offset{Topic: t, Partition: p, At: -1}, Start: start, End: end, Lag: -1}
			if l.Err = cmp.Or(end.Err, start.Err); l.Err == nil {
				l.Lag = max(end.Offset-start.Offset, 0)
			}
			lag[t][p] = l
		}
	}
	return nil
}
