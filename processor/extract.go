package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/jsonata"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/tracing"
	"github.com/erpstream/erpstream/mapping"
)

// extract finds the event's use case and runs its mapping's extraction stage, or takes the
// extraction the instance that polled a spread org's event made (ev.Mapped). A nil extraction
// comes with the outcome that ends the event.
func (p *Processor) extract(ctx context.Context, ev *envelope.Event) (*registry.UseCase, *mapping.Extraction, outcome) {
	uc, ok := p.cfg.Registry.Snapshot().UseCase(ev.OrgID, ev.UseCaseID)
	if !ok {
		p.mappings.Delete(ev.OrgID + "/" + ev.UseCaseID)
		return nil, nil, outcome{level: envelope.LevelError, code: "USE_CASE_NOT_FOUND",
			message: fmt.Sprintf("use case %s was deleted before the event was processed", ev.UseCaseID)}
	}
	if len(ev.Mapped) > 0 {
		if res, o, ok := p.mappedAway(ev, uc); ok {
			return uc, res, o
		}
	}
	res, o := p.evaluate(ctx, ev, uc)
	return uc, res, o
}

// evaluate runs the extraction stage of the use case's mapping over the event's payload.
func (p *Processor) evaluate(ctx context.Context, ev *envelope.Event, uc *registry.UseCase) (*mapping.Extraction, outcome) {
	o := outcome{useCaseType: uc.Type}
	if !uc.Enabled {
		o.level, o.code, o.message = envelope.LevelSkipped, "USE_CASE_DISABLED", "use case "+uc.Slug+" is disabled"
		return nil, o
	}
	m, err := p.compiled(uc)
	if err != nil {
		o.level, o.code, o.message = envelope.LevelError, "USE_CASE_MISSING_CONFIG", fmt.Sprintf("use case %s: %v", uc.Slug, err)
		return nil, o
	}
	// The simulation parses payloads with the same function.
	payload, err := mapping.ParsePayload(ev.Payload, ev.Format)
	if err != nil {
		o.level, o.code, o.message = envelope.LevelError, "MALFORMED_PAYLOAD", fmt.Sprintf("use case %s: %v", uc.Slug, err)
		return nil, o
	}
	evalCtx, cancel := context.WithTimeout(ctx, p.cfg.EvalTimeout)
	defer cancel()
	res, err := m.ExtractWithin(evalCtx, payload, &jsonata.Env{Now: ev.ReceivedAt()}, mapping.Limits{MaxUpdates: p.cfg.MaxEntityUpdatesPerEvent})
	if err != nil {
		var me *mapping.Error
		code := "MAPPING_EXPRESSION_FAILED"
		if errors.As(err, &me) {
			code = me.Code
		}
		o.level, o.code, o.message = envelope.LevelError, code, fmt.Sprintf("use case %s: %v", uc.Slug, err)
		return nil, o
	}
	return res, o
}

// mappedEvent is what an instance that mapped a spread org's event away (mapAway) tells the
// instance holding the org's partition: the extraction, or the outcome that ended the event.
type mappedEvent struct {
	UseCaseVersion int64           `json:"use_case_version"`
	Extraction     json.RawMessage `json:"extraction,omitempty"`
	Level          envelope.Level  `json:"level,omitempty"`
	Code           string          `json:"code,omitempty"`
	Message        string          `json:"message,omitempty"`
}

// mappedAway reads ev.Mapped. It reports false when the event must be mapped here after all:
// the use case changed since (its configuration of then is gone), or the copy comes from an
// instance of another version whose encoding this one does not read.
func (p *Processor) mappedAway(ev *envelope.Event, uc *registry.UseCase) (*mapping.Extraction, outcome, bool) {
	o := outcome{useCaseType: uc.Type}
	var m mappedEvent
	if err := envelope.Decode(ev.Mapped, &m); err != nil || m.UseCaseVersion != uc.Version {
		return nil, o, false
	}
	if len(m.Extraction) == 0 {
		if m.Code == "" {
			return nil, o, false
		}
		o.level, o.code, o.message = m.Level, m.Code, m.Message
		return nil, o, true
	}
	res, err := mapping.DecodeExtraction(m.Extraction)
	if err != nil {
		if p.codecLogged.CompareAndSwap(false, true) {
			p.log.Warn("an event mapped by another instance cannot be read here (an instance of another version?); mapped again here; logged once",
				"event_id", ev.EventID, "err", err)
		}
		return nil, o, false
	}
	return res, o, true
}

// mapsAway reports a spread org's event polled outside the org's partition: this instance maps
// it, and the instance holding the org's partition applies it.
func (p *Processor) mapsAway(in polledEvent) bool {
	return len(in.ev.Mapped) == 0 && p.cfg.Topics.Spreads(in.ev.OrgID) && p.misplaced(in) && !kafkax.IsCopy(in.rec)
}

// mapAway maps a spread org's event and returns its copy for the org's partition, carrying the
// extraction (or the outcome that ended it), produced in the transaction that commits past the
// original: applied once, there, against the org's states. Deduplication and the monitoring
// row are the applying instance's. An extraction it cannot encode leaves the copy without one,
// and the applying instance maps it itself.
func (p *Processor) mapAway(ctx context.Context, rec *kgo.Record, ev *envelope.Event) []*kgo.Record {
	_, span := tracing.Tracer().Start(tracing.Extract(ctx, rec), "map event for its org's partition", trace.WithAttributes(
		attribute.String("erpstream.org", ev.OrgID), attribute.String("erpstream.event_id", ev.EventID)))
	defer span.End()
	p.mappedAwayPending++
	cp := *ev
	if uc, ok := p.cfg.Registry.Snapshot().UseCase(ev.OrgID, ev.UseCaseID); ok {
		m := mappedEvent{UseCaseVersion: uc.Version}
		res, o := p.evaluate(ctx, ev, uc)
		if res != nil {
			var err error
			if m.Extraction, err = mapping.EncodeExtraction(res); err != nil {
				if p.codecLogged.CompareAndSwap(false, true) {
					p.log.Warn("an extraction cannot be encoded for its org's partition, which maps the event itself; logged once",
						"event_id", ev.EventID, "use_case_id", ev.UseCaseID, "err", err)
				}
			}
		} else {
			m.Level, m.Code, m.Message = o.level, o.code, o.message
		}
		if len(m.Extraction) > 0 || m.Code != "" {
			cp.Mapped, _ = json.Marshal(m)
		}
		// An extraction too large for one record (a wide fan-out) stays behind: the applying
		// instance maps the event itself rather than the transaction failing again and again.
		if len(rec.Key)+len(ev.Payload)+len(cp.Mapped)+1024 > p.cfg.MaxRecordBytes {
			cp.Mapped = nil
		}
	}
	headers := append(slices.Clip(rec.Headers), kgo.RecordHeader{Key: kafkax.HeaderCopyOf, Value: fmt.Appendf(nil, "%d/%d", rec.Partition, rec.Offset)})
	return []*kgo.Record{{Topic: rec.Topic, Key: rec.Key, Value: cp.AppendJSON(make([]byte, 0, len(ev.Payload)+len(cp.Mapped)+512)), Headers: headers}}
}
