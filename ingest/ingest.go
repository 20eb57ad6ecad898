// Package ingest is the front door for ERP feeds: it validates event envelopes, resolves each
// event's use case and stores the events in Kafka. It answers only after the broker acknowledged
// every event of the request (acks=all); when it cannot, it answers 503 and stores nothing the
// client is told about.
package ingest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/registry"
)

// MaxEventsPerRequest is the seed's limit; the spec has no maxItems, so it is enforced here.
const MaxEventsPerRequest = 100

var (
	slugPattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	dedupPattern = regexp.MustCompile(`^[a-zA-Z0-9_-]+$`)
)

// Producer is the part of a Kafka client ingest needs.
type Producer interface {
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

// Config of the ingest service.
type Config struct {
	Topics   kafkax.Topics
	Producer Producer
	Registry *registry.Registry
	// AckTimeout bounds the wait for the broker; past it the request is answered 503.
	AckTimeout time.Duration
	Log        *slog.Logger
	Now        func() time.Time
}

// Service is the ingest HTTP service.
type Service struct {
	cfg   Config
	log   *slog.Logger
	clock ids.MonotonicMicros
}

// New validates cfg.
func New(cfg Config) (*Service, error) {
	if cfg.Producer == nil || cfg.Registry == nil {
		return nil, errors.New("ingest: producer and registry are required")
	}
	if cfg.AckTimeout <= 0 {
		cfg.AckTimeout = 10 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, log: cfg.Log.With("component", "ingest")}, nil
}

// Register mounts the event routes on an authenticated router group.
func (s *Service) Register(r gin.IRouter) {
	r.POST("/v3/erp/updates/events", httpapi.Require("erp:events"), s.eventsV3)
}

type metaV3 struct {
	CorrelationID string `json:"correlation_id"`
}

type requestV3 struct {
	IntegrationID string            `json:"integration_id"`
	CorrelationID string            `json:"correlation_id"`
	Meta          *metaV3           `json:"meta"`
	Events        []json.RawMessage `json:"events"`
}

type eventV3 struct {
	EventName       string          `json:"event_name"`
	ObjectType      string          `json:"object_type"`
	UseCaseSlug     *string         `json:"use_case_slug"`
	EventType       string          `json:"event_type"`
	Timestamp       string          `json:"timestamp"`
	Format          string          `json:"format"`
	Payload         json.RawMessage `json:"payload"`
	DeduplicationID *string         `json:"deduplication_id"`
	CorrelationID   string          `json:"correlation_id"`
}

// Result is one entry of the response's results, in request order.
type Result struct {
	EventID string `json:"event_id"`
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

func bad(c *gin.Context, format string, args ...any) {
	httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, fmt.Sprintf(format, args...))
}

func (s *Service) eventsV3(c *gin.Context) {
	p := httpapi.Principal(c)
	var req requestV3
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if req.IntegrationID == "" {
		bad(c, "integration_id: required")
		return
	}
	if req.Events == nil {
		bad(c, "events: required array")
		return
	}
	if len(req.Events) > MaxEventsPerRequest {
		bad(c, "events: %d events in one request; at most %d are allowed", len(req.Events), MaxEventsPerRequest)
		return
	}
	snap := s.cfg.Registry.Snapshot()
	integ, ok := snap.Integration(p.OrgID, req.IntegrationID)
	if !ok {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound, "integration "+req.IntegrationID+" not found")
		return
	}
	correlation := req.CorrelationID
	if correlation == "" && req.Meta != nil {
		correlation = req.Meta.CorrelationID
	}
	if correlation == "" {
		correlation = ids.NewUUID()
	}

	// Validate the whole request before storing anything: a rejected request leaves no trace.
	results := make([]Result, len(req.Events))
	records := make([]*kgo.Record, 0, len(req.Events))
	for i, raw := range req.Events {
		ev, uc, err := s.validateEvent(snap, integ, i, raw)
		if err != nil {
			var nf *notFoundError
			if errors.As(err, &nf) {
				httpapi.Abort(c, http.StatusNotFound, httpapi.CodeUseCaseNotFound, err.Error())
				return
			}
			bad(c, "%s", err.Error())
			return
		}
		now := s.cfg.Now()
		e := envelope.Event{
			EventID:       ids.EventID(now),
			OrgID:         p.OrgID,
			IntegrationID: integ.ID,
			UseCaseID:     uc.ID,
			UseCaseSlug:   uc.Slug,
			EventName:     ev.EventName,
			EventType:     ev.EventType,
			Timestamp:     ev.Timestamp,
			Format:        ev.Format,
			CorrelationID: correlation,
			ReceivedAtUs:  s.clock.Next(now),
		}
		if ev.CorrelationID != "" {
			e.CorrelationID = ev.CorrelationID
		}
		if ev.DeduplicationID != nil {
			e.DeduplicationID = *ev.DeduplicationID
		}
		e.Payload = payloadString(ev.Payload)
		results[i] = Result{EventID: e.EventID}
		if !uc.Enabled {
			results[i].Status, results[i].Message = "ignored", "use case "+uc.Slug+" is disabled"
			continue
		}
		value, err := json.Marshal(&e)
		if err != nil {
			bad(c, "events[%d]: %v", i, err)
			return
		}
		spread := e.DeduplicationID
		if spread == "" {
			spread = e.EventID
		}
		records = append(records, &kgo.Record{
			Topic: s.cfg.Topics.Events,
			Key:   []byte(e.OrgID + "/" + e.IntegrationID + "/" + e.UseCaseID + "/" + spread),
			Value: value,
			Headers: []kgo.RecordHeader{
				{Key: envelope.HeaderOrg, Value: []byte(e.OrgID)},
				{Key: envelope.HeaderIntegration, Value: []byte(e.IntegrationID)},
				{Key: envelope.HeaderUseCase, Value: []byte(e.UseCaseID)},
				{Key: envelope.HeaderCorrelationID, Value: []byte(e.CorrelationID)},
				{Key: envelope.HeaderSchema, Value: []byte(envelope.SchemaVersion)},
			},
		})
		results[i].Status, results[i].Message = "success", "Event queued for processing"
	}

	if len(records) > 0 {
		ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.AckTimeout)
		defer cancel()
		if err := s.cfg.Producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
			s.log.Warn("events not acknowledged by kafka; answering 503", "integration_id", integ.ID,
				"events", len(records), "correlation_id", correlation, "err", err)
			c.Header("Retry-After", "5")
			httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
				"events could not be stored; retry the request (deduplication ids make the retry safe)")
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"results": results})
}

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string { return e.msg }

// validateEvent checks one event and resolves its use case.
func (s *Service) validateEvent(snap *registry.Snapshot, integ *registry.Integration, i int, raw json.RawMessage) (*eventV3, *registry.UseCase, error) {
	var ev eventV3
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, nil, fmt.Errorf("events[%d]: must be an event object: %v", i, err)
	}
	if ev.EventName == "" {
		ev.EventName = ev.ObjectType
	}
	if ev.UseCaseSlug == nil && ev.EventName == "" {
		return nil, nil, fmt.Errorf("events[%d]: use_case_slug or event_name is required", i)
	}
	if ev.UseCaseSlug != nil && (len(*ev.UseCaseSlug) == 0 || len(*ev.UseCaseSlug) > 255 || !slugPattern.MatchString(*ev.UseCaseSlug)) {
		return nil, nil, fmt.Errorf("events[%d].use_case_slug: %q must match ^[a-z0-9][a-z0-9_-]*$ (1 to 255 characters)", i, *ev.UseCaseSlug)
	}
	if ev.Timestamp == "" {
		return nil, nil, fmt.Errorf("events[%d].timestamp: required (ISO 8601 date-time)", i)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err != nil {
		return nil, nil, fmt.Errorf("events[%d].timestamp: %q is not an ISO 8601 date-time", i, ev.Timestamp)
	}
	switch ev.Format {
	case "":
		ev.Format = "json"
	case "json":
	case "xml":
		return nil, nil, fmt.Errorf("events[%d].format: xml payloads are not supported by this version yet", i)
	default:
		return nil, nil, fmt.Errorf("events[%d].format: must be json or xml", i)
	}
	if msg := checkPayload(ev.Payload); msg != "" {
		return nil, nil, fmt.Errorf("events[%d].payload: %s", i, msg)
	}
	if ev.DeduplicationID != nil {
		d := *ev.DeduplicationID
		if len(d) == 0 || len(d) > 255 || !dedupPattern.MatchString(d) {
			return nil, nil, fmt.Errorf("events[%d].deduplication_id: must match ^[a-zA-Z0-9_-]+$ (1 to 255 characters)", i)
		}
	}
	switch ev.EventType {
	case "", "CREATE", "UPDATE", "DELETE":
	default:
		return nil, nil, fmt.Errorf("events[%d].event_type: must be CREATE, UPDATE or DELETE", i)
	}
	var uc *registry.UseCase
	var ok bool
	if ev.UseCaseSlug != nil {
		if uc, ok = snap.UseCaseBySlug(integ.OrgID, integ.ID, *ev.UseCaseSlug); !ok {
			return nil, nil, &notFoundError{fmt.Sprintf("events[%d].use_case_slug: no use case %q in integration %s", i, *ev.UseCaseSlug, integ.ID)}
		}
	} else if uc, ok = snap.UseCaseByName(integ.OrgID, integ.ID, ev.EventName); !ok {
		return nil, nil, &notFoundError{fmt.Sprintf("events[%d].event_name: no use case named %q in integration %s", i, ev.EventName, integ.ID)}
	}
	if uc.Type != registry.TypeInbound {
		return nil, nil, fmt.Errorf("events[%d]: use case %q is of type %s, events go to inbound use cases", i, uc.Slug, uc.Type)
	}
	return &ev, uc, nil
}

// checkPayload accepts a JSON string of at least 2 characters or an object with at least one key.
func checkPayload(raw json.RawMessage) string {
	trimmed := strings.TrimSpace(string(raw))
	switch {
	case trimmed == "" || trimmed == "null":
		return "required"
	case trimmed[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || len(s) < 2 {
			return "a string payload must have at least 2 characters"
		}
	case trimmed[0] == '{':
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil || len(m) == 0 {
			return "an object payload must have at least one property"
		}
	default:
		return "must be a string or an object"
	}
	return ""
}

// payloadString returns the payload as the string the processor parses.
func payloadString(raw json.RawMessage) string {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return s
	}
	return string(raw)
}
