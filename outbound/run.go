package outbound

import (
	"context"
	"encoding/json"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/erpstream/erpstream/internal/tracing"
)

// run makes one attempt of j and settles the delivery: delivered (and an acknowledgement
// pending), retried through a retry topic, or dead-lettered.
func (s *Service) run(ctx context.Context, j *job) {
	d := j.d
	release, ok := s.cfg.OrgConcurrency.Acquire(d.OrgID)
	if !ok {
		if j.sync != nil {
			j.sync <- &outcome{err: errOrgBusy, retry: true}
			return
		}
		s.metrics.deferred.Inc()
		s.defer_(ctx, j, "the org has too many open outbound requests")
		return
	}
	actx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	if d.TraceParent != "" {
		actx = otel.GetTextMapPropagator().Extract(actx, propagation.MapCarrier{"traceparent": d.TraceParent})
	}
	actx, span := tracing.Tracer().Start(actx, "deliver webhook", trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("erpstream.org", d.OrgID), attribute.String("erpstream.delivery_id", d.ID),
			attribute.String("erpstream.event", d.EventName), attribute.Int("erpstream.attempt", d.Attempts+1)))
	o := s.attempt(actx, d)
	span.SetAttributes(attribute.Int("http.response.status_code", o.status))
	if o.err != nil {
		span.SetStatus(codes.Error, o.err.Error())
	}
	span.End()
	cancel()
	release()
	if ctx.Err() != nil {
		return // shutting down: the record stays uncommitted and is attempted again
	}
	d.Attempts++
	if d.FirstAttemptMs == 0 {
		d.FirstAttemptMs = s.now().UnixMilli()
	}
	if o.status > 0 {
		s.metrics.latency.Observe(o.latency.Seconds())
	}
	switch {
	case o.ok():
		s.metrics.attempts.WithLabelValues("delivered").Inc()
		rows := []row{rowDelivered(d, o)}
		if d.AckID != "" {
			if s.cfg.Acks.track(ctx, s, d) {
				rows = append(rows, rowAckPending(d))
			}
		}
		s.record(ctx, d, rows...)
	case o.disabled:
		s.metrics.attempts.WithLabelValues("skipped").Inc()
		s.record(ctx, d, rowDisabled(d, o))
	case j.sync != nil:
		s.metrics.attempts.WithLabelValues("failed").Inc()
		s.record(ctx, d, rowFailed(d, o, false))
	case o.retry && d.Attempts < s.cfg.MaxAttempts:
		s.metrics.attempts.WithLabelValues("retrying").Inc()
		wait, tier := retryDelay(s.cfg.RetryDelays, d.Attempts, o.after)
		d.DueMs = s.now().Add(wait).UnixMilli()
		d.LastError = o.err.Error()
		s.record(ctx, d, rowRetrying(d, o, wait))
		s.produceDurably(ctx, s.cfg.Topics.OutboundRetries[tier], d)
	default:
		s.metrics.attempts.WithLabelValues("failed").Inc()
		d.LastError = o.err.Error()
		d.DueMs = 0
		s.record(ctx, d, rowFailed(d, o, true))
		s.produceDurably(ctx, s.cfg.Topics.OutboundDead, d)
	}
	if j.sync != nil {
		j.sync <- o
	}
	if j.done != nil {
		j.done()
	}
}

// defer_ moves a delivery to the first retry topic without an attempt. The write is
// asynchronous (the dispatcher serves every destination); the delivery is done once stored.
func (s *Service) defer_(ctx context.Context, j *job, why string) {
	d := *j.d
	d.DueMs = s.now().Add(s.cfg.RetryDelays[0]).UnixMilli()
	d.LastError = "deferred: " + why
	go func() {
		s.produceDurably(ctx, s.cfg.Topics.OutboundRetries[0], &d)
		if j.done != nil && ctx.Err() == nil {
			j.done()
		}
	}()
}

// produceDurably writes a record and waits for the broker's acknowledgement, retrying while the
// broker is away: the source record is marked done only after its successor is stored.
func (s *Service) produceDurably(ctx context.Context, topic string, d *Delivery) {
	value, _ := json.Marshal(d)
	backoff := 200 * time.Millisecond
	for {
		err := s.cfg.Producer.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: d.recordKey(), Value: value}).FirstErr()
		if err == nil || ctx.Err() != nil {
			return
		}
		s.log.Warn("outbound record not stored; retrying", "topic", topic, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}
