// Package projector writes entity writes and monitoring events from Kafka into ClickHouse.
//
// Offsets are committed only after ClickHouse accepted the batch. A crash between insert and
// commit re-inserts the batch; the tables collapse such duplicates (idempotent row keys with
// ReplacingMergeTree) and readers use FINAL, so nothing a user sees is counted twice.
package projector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// Sink stores decoded rows; implemented by the ClickHouse sink.
type Sink interface {
	WriteEntities(ctx context.Context, rows []envelope.EntityWrite) error
	WriteMonitoring(ctx context.Context, rows []envelope.MonitoringEvent) error
}

// Config of the projector.
type Config struct {
	Kafka  kafkax.Config
	Topics kafkax.Topics
	Group  string // default "erpstream-projector"
	// A batch flushes at MaxRows records or FlushInterval after its first record, whichever
	// comes first. 18.16 pays a large fixed cost per insert, so batches should not be tiny.
	MaxRows       int
	FlushInterval time.Duration
	Sink          Sink
	Log           *slog.Logger
}

// Projector is the ClickHouse writer service.
type Projector struct {
	cfg Config
	log *slog.Logger
}

// New validates cfg.
func New(cfg Config) (*Projector, error) {
	if cfg.Sink == nil {
		return nil, errors.New("projector: sink is required")
	}
	if cfg.Group == "" {
		cfg.Group = "erpstream-projector"
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 20000
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = time.Second
	}
	return &Projector{cfg: cfg, log: cfg.Log.With("component", "projector")}, nil
}

// Run consumes until ctx ends.
func (p *Projector) Run(ctx context.Context) error {
	cl, err := kgo.NewClient(append(p.cfg.Kafka.BaseOpts(p.log),
		kgo.ConsumerGroup(p.cfg.Group),
		kgo.ConsumeTopics(p.cfg.Topics.Entities, p.cfg.Topics.Monitoring),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchMaxWait(500*time.Millisecond),
	)...)
	if err != nil {
		return fmt.Errorf("projector: %w", err)
	}
	defer cl.Close()
	p.log.Info("projector consuming", "topics", []string{p.cfg.Topics.Entities, p.cfg.Topics.Monitoring}, "group", p.cfg.Group)

	for {
		recs := p.collect(ctx, cl)
		if ctx.Err() != nil {
			cl.AllowRebalance()
			return nil
		}
		if len(recs) > 0 {
			if err := p.flush(ctx, recs); err != nil {
				cl.AllowRebalance()
				if ctx.Err() != nil {
					return nil
				}
				return err
			}
			if err := cl.CommitRecords(ctx, recs...); err != nil {
				// The rows are stored; a failed commit only means they are written again
				// after a restart, which the tables collapse.
				p.log.Warn("offset commit failed after insert; batch will be re-inserted on restart", "err", err)
			}
		}
		cl.AllowRebalance()
	}
}

// collect polls until a batch is full or its age reaches FlushInterval.
func (p *Projector) collect(ctx context.Context, cl *kgo.Client) []*kgo.Record {
	var recs []*kgo.Record
	var deadline time.Time
	for len(recs) < p.cfg.MaxRows {
		if len(recs) > 0 && !time.Now().Before(deadline) {
			break
		}
		fetches := p.poll(ctx, cl, p.cfg.MaxRows-len(recs), deadline)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, part int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				p.log.Warn("fetch error", "topic", t, "partition", part, "err", err)
			}
		})
		if len(recs) == 0 && fetches.NumRecords() > 0 {
			deadline = time.Now().Add(p.cfg.FlushInterval)
		}
		recs = append(recs, fetches.Records()...)
	}
	return recs
}

// poll waits for records, until deadline when one is set (a batch is open).
func (p *Projector) poll(ctx context.Context, cl *kgo.Client, max int, deadline time.Time) kgo.Fetches {
	if deadline.IsZero() {
		return cl.PollRecords(ctx, max)
	}
	pctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	return cl.PollRecords(pctx, max)
}

// flush decodes and writes one batch, retrying with backoff until ClickHouse takes it or ctx ends:
// a ClickHouse outage pauses consumption and loses nothing.
func (p *Projector) flush(ctx context.Context, recs []*kgo.Record) error {
	var entities []envelope.EntityWrite
	var monitoring []envelope.MonitoringEvent
	for _, r := range recs {
		switch r.Topic {
		case p.cfg.Topics.Entities:
			var w envelope.EntityWrite
			if err := json.Unmarshal(r.Value, &w); err != nil {
				p.log.Error("undecodable entity write; skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
				continue
			}
			entities = append(entities, w)
		case p.cfg.Topics.Monitoring:
			var m envelope.MonitoringEvent
			if err := json.Unmarshal(r.Value, &m); err != nil {
				p.log.Error("undecodable monitoring event; skipped", "partition", r.Partition, "offset", r.Offset, "err", err)
				continue
			}
			monitoring = append(monitoring, m)
		}
	}
	backoff := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		start := time.Now()
		err := p.write(ctx, entities, monitoring)
		if err == nil {
			p.log.Debug("batch written", "entities", len(entities), "monitoring", len(monitoring), "ms", time.Since(start).Milliseconds())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		p.log.Warn("clickhouse insert failed; retrying", "attempt", attempt, "entities", len(entities), "monitoring", len(monitoring), "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return ctx.Err()
		}
		if backoff < 10*time.Second {
			backoff *= 2
		}
	}
}

func (p *Projector) write(ctx context.Context, entities []envelope.EntityWrite, monitoring []envelope.MonitoringEvent) error {
	// Entities before monitoring: a monitoring row saying "updated" is never visible before the entity.
	if len(entities) > 0 {
		if err := p.cfg.Sink.WriteEntities(ctx, entities); err != nil {
			return err
		}
	}
	if len(monitoring) > 0 {
		if err := p.cfg.Sink.WriteMonitoring(ctx, monitoring); err != nil {
			return err
		}
	}
	return nil
}
