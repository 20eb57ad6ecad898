// Package ingest is the front door for ERP feeds: it validates event envelopes, resolves each
// event's use case and stores the events in Kafka. It answers only after the broker acknowledged
// every record of the request (acks=all); when it cannot, it answers 503 and the client resends
// (deduplication ids make that safe).
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
	"github.com/erpstream/erpstream/internal/xmljson"
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
	Produce(ctx context.Context, r *kgo.Record, promise func(*kgo.Record, error))
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
	perm := httpapi.Require("erp:events")
	r.POST("/v3/erp/updates/events", perm, s.eventsV3)
	r.POST("/v2/erp/updates/events", perm, s.eventsV2)
	r.POST("/v1/erp/updates/events", perm, s.eventsV1)
	r.POST("/v3/erp/updates/events/ndjson", perm, s.eventsNDJSON)
}

type meta struct {
	CorrelationID string `json:"correlation_id"`
}

// request is the union of the three envelope versions.
type request struct {
	IntegrationID string            `json:"integration_id"`
	AppID         string            `json:"app_id"`
	ComponentID   string            `json:"component_id"`
	CorrelationID string            `json:"correlation_id"`
	Meta          *meta             `json:"meta"`
	Events        []json.RawMessage `json:"events"`
}

// eventIn is the union of ErpEventV3 and ErpEvent.
type eventIn struct {
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
	Status  string `json:"status"` // success, error, skipped, ignored
	Message string `json:"message,omitempty"`
}

type apiVersion int

const (
	v1 apiVersion = 1
	v2 apiVersion = 2
	v3 apiVersion = 3
)

func bad(c *gin.Context, format string, args ...any) {
	httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, fmt.Sprintf(format, args...))
}

func (s *Service) eventsV3(c *gin.Context) { s.handle(c, v3) }
func (s *Service) eventsV2(c *gin.Context) { s.handle(c, v2) }
func (s *Service) eventsV1(c *gin.Context) { s.handle(c, v1) }

func (s *Service) handle(c *gin.Context, version apiVersion) {
	var req request
	if !httpapi.BindJSON(c, &req) {
		return
	}
	integ, correlation, ok := s.envelope(c, version, &req)
	if !ok {
		return
	}
	results, records := s.prepare(httpapi.Principal(c).OrgID, integ, version, correlation, req.Events, 0)
	if len(records) > 0 {
		ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.AckTimeout)
		defer cancel()
		if err := s.cfg.Producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
			s.log.Warn("events not acknowledged by kafka; answering 503", "integration_id", integ.ID,
				"records", len(records), "correlation_id", correlation, "err", err)
			c.Header("Retry-After", "5")
			httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
				"events could not be stored; retry the request (deduplication ids make the retry safe)")
			return
		}
	}
	c.JSON(http.StatusOK, gin.H{"results": results})
}

// envelope checks the request-level fields and resolves the integration; false means answered.
func (s *Service) envelope(c *gin.Context, version apiVersion, req *request) (*registry.Integration, string, bool) {
	org := httpapi.Principal(c).OrgID
	snap := s.cfg.Registry.Snapshot()
	var integ *registry.Integration
	switch version {
	case v1:
		if req.AppID == "" || req.ComponentID == "" {
			bad(c, "app_id and component_id: required")
			return nil, "", false
		}
		if req.Meta == nil {
			bad(c, "meta: required")
			return nil, "", false
		}
		m, ok := snap.AppMapping(org, req.AppID, req.ComponentID)
		if !ok {
			httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound,
				"no integration is mapped to app "+req.AppID+" / component "+req.ComponentID+" (PUT /v1/integrations/{id}/app-mapping)")
			return nil, "", false
		}
		if integ, ok = snap.Integration(org, m.IntegrationID); !ok {
			httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound, "integration "+m.IntegrationID+" not found")
			return nil, "", false
		}
	default:
		if req.IntegrationID == "" {
			bad(c, "integration_id: required")
			return nil, "", false
		}
		var ok bool
		if integ, ok = snap.Integration(org, req.IntegrationID); !ok {
			httpapi.Abort(c, http.StatusNotFound, httpapi.CodeIntegrationNotFound, "integration "+req.IntegrationID+" not found")
			return nil, "", false
		}
	}
	if req.Events == nil {
		bad(c, "events: required array")
		return nil, "", false
	}
	if len(req.Events) > MaxEventsPerRequest {
		bad(c, "events: %d events in one request; at most %d are allowed (use /v3/erp/updates/events/ndjson for bulk loads)", len(req.Events), MaxEventsPerRequest)
		return nil, "", false
	}
	correlation := req.CorrelationID
	if correlation == "" && req.Meta != nil {
		correlation = req.Meta.CorrelationID
	}
	if correlation == "" {
		correlation = ids.NewUUID()
	}
	return integ, correlation, true
}

// prepare validates and routes events; it returns the per-event results in order and the records
// to produce: accepted events, plus monitoring rows for what was rejected, ignored or skipped here.
func (s *Service) prepare(org string, integ *registry.Integration, version apiVersion, correlation string,
	events []json.RawMessage, lineOffset int) ([]Result, []*kgo.Record) {
	snap := s.cfg.Registry.Snapshot()
	results := make([]Result, len(events))
	records := make([]*kgo.Record, 0, len(events))
	seenDedup := map[string]bool{}
	for i, raw := range events {
		now := s.cfg.Now()
		eventID := ids.EventID(now)
		results[i].EventID = eventID
		ev, uc, problem := s.validate(snap, integ, version, i+lineOffset, raw)
		corr := correlation
		if ev != nil && ev.CorrelationID != "" {
			corr = ev.CorrelationID
		}
		base := envelope.Event{EventID: eventID, OrgID: org, IntegrationID: integ.ID, CorrelationID: corr}
		if uc != nil {
			base.UseCaseID, base.UseCaseSlug = uc.ID, uc.Slug
		}
		if problem != nil {
			results[i].Status, results[i].Message = problem.status, problem.message
			records = append(records, s.monitoring(&base, problem.level, problem.code, problem.message, now))
			continue
		}
		if ev.DeduplicationID != nil {
			if seenDedup[*ev.DeduplicationID] {
				msg := "deduplication_id " + *ev.DeduplicationID + " appears earlier in this request"
				results[i].Status, results[i].Message = "skipped", msg
				records = append(records, s.monitoring(&base, envelope.LevelInfo, "DUPLICATE_EVENT", msg, now))
				continue
			}
			seenDedup[*ev.DeduplicationID] = true
		}
		e := base
		e.EventName, e.EventType, e.Timestamp, e.Format = firstNonEmpty(ev.EventName, ev.ObjectType), ev.EventType, ev.Timestamp, ev.Format
		if ev.DeduplicationID != nil {
			e.DeduplicationID = *ev.DeduplicationID
		}
		e.Payload = payloadString(ev.Payload)
		e.ReceivedAtUs = s.clock.Next(now)
		value, err := json.Marshal(&e)
		if err != nil {
			results[i].Status, results[i].Message = "error", err.Error()
			continue
		}
		records = append(records, &kgo.Record{Topic: s.cfg.Topics.Events, Key: EventKey(&e), Value: value, Headers: headers(&e)})
		results[i].Status, results[i].Message = "success", "Event queued for processing"
	}
	return results, records
}

// EventKey is the events topic's record key. With a deduplication id it is
// "<org>/<integration>/dedup/<deduplication id>": deduplication is per integration, so every copy
// of one ERP message meets in one partition, where its deduplication state lives (the dedup
// topic is co-partitioned and uses the same key). Without one it is
// "<org>/<integration>/<use case>/<event id>". Either way a hot use case spreads over every
// partition instead of being capped at one.
func EventKey(e *envelope.Event) []byte {
	if e.DeduplicationID != "" {
		return []byte(e.OrgID + "/" + e.IntegrationID + "/dedup/" + e.DeduplicationID)
	}
	return []byte(e.OrgID + "/" + e.IntegrationID + "/" + e.UseCaseID + "/" + e.EventID)
}

func headers(e *envelope.Event) []kgo.RecordHeader {
	return []kgo.RecordHeader{
		{Key: envelope.HeaderOrg, Value: []byte(e.OrgID)},
		{Key: envelope.HeaderIntegration, Value: []byte(e.IntegrationID)},
		{Key: envelope.HeaderUseCase, Value: []byte(e.UseCaseID)},
		{Key: envelope.HeaderCorrelationID, Value: []byte(e.CorrelationID)},
		{Key: envelope.HeaderSchema, Value: []byte(envelope.SchemaVersion)},
	}
}

func (s *Service) monitoring(e *envelope.Event, level envelope.Level, code, message string, now time.Time) *kgo.Record {
	m := envelope.MonitoringEvent{
		ID:            ids.NameUUID("monitoring", e.OrgID, e.EventID, "ingest"),
		OrgID:         e.OrgID,
		IntegrationID: e.IntegrationID,
		EventID:       e.EventID,
		CorrelationID: e.CorrelationID,
		UseCaseID:     e.UseCaseID,
		UseCaseType:   registry.TypeInbound,
		Level:         level,
		Code:          code,
		Message:       message,
		CreatedAtMs:   now.UnixMilli(),
	}
	b, _ := json.Marshal(&m)
	return &kgo.Record{Topic: s.cfg.Topics.Monitoring, Key: []byte(e.OrgID + "/" + e.EventID), Value: b}
}

type problem struct {
	status  string // error or ignored
	level   envelope.Level
	code    string
	message string
}

func invalid(format string, args ...any) *problem {
	return &problem{status: "error", level: envelope.LevelError, code: "VALIDATION_ERROR", message: fmt.Sprintf(format, args...)}
}

// validate checks one event and resolves its use case.
func (s *Service) validate(snap *registry.Snapshot, integ *registry.Integration, version apiVersion, i int, raw json.RawMessage) (*eventIn, *registry.UseCase, *problem) {
	var ev eventIn
	if err := json.Unmarshal(raw, &ev); err != nil {
		return nil, nil, invalid("events[%d]: must be an event object: %v", i, err)
	}
	name := firstNonEmpty(ev.EventName, ev.ObjectType)
	switch version {
	case v3:
		if ev.UseCaseSlug == nil && name == "" {
			return &ev, nil, invalid("events[%d]: use_case_slug or event_name is required", i)
		}
	default:
		if ev.ObjectType == "" && ev.UseCaseSlug == nil {
			return &ev, nil, invalid("events[%d].object_type: required", i)
		}
		if ev.EventType == "" {
			return &ev, nil, invalid("events[%d].event_type: required (CREATE, UPDATE or DELETE)", i)
		}
	}
	if ev.UseCaseSlug != nil && (len(*ev.UseCaseSlug) == 0 || len(*ev.UseCaseSlug) > 255 || !slugPattern.MatchString(*ev.UseCaseSlug)) {
		return &ev, nil, invalid("events[%d].use_case_slug: %q must match ^[a-z0-9][a-z0-9_-]*$ (1 to 255 characters)", i, *ev.UseCaseSlug)
	}
	switch ev.EventType {
	case "", "CREATE", "UPDATE", "DELETE":
	default:
		return &ev, nil, invalid("events[%d].event_type: must be CREATE, UPDATE or DELETE", i)
	}
	if ev.Timestamp == "" {
		return &ev, nil, invalid("events[%d].timestamp: required (ISO 8601 date-time)", i)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err != nil {
		return &ev, nil, invalid("events[%d].timestamp: %q is not an ISO 8601 date-time", i, ev.Timestamp)
	}
	if ev.DeduplicationID != nil {
		if d := *ev.DeduplicationID; len(d) == 0 || len(d) > 255 || !dedupPattern.MatchString(d) {
			return &ev, nil, invalid("events[%d].deduplication_id: must match ^[a-zA-Z0-9_-]+$ (1 to 255 characters)", i)
		}
	}
	if ev.Format == "" {
		ev.Format = "json"
	}
	if ev.Format != "json" && ev.Format != "xml" {
		return &ev, nil, invalid("events[%d].format: must be json or xml", i)
	}
	// Route before checking the payload, so that a malformed payload is reported under its use case.
	uc := route(snap, integ, ev.UseCaseSlug, name)
	if uc == nil {
		what := "use_case_slug " + deref(ev.UseCaseSlug)
		if ev.UseCaseSlug == nil {
			what = "event_name " + name
		}
		return &ev, nil, &problem{status: "ignored", level: envelope.LevelSkipped, code: "EVENT_NOT_CONFIGURED",
			message: fmt.Sprintf("events[%d]: no inbound use case for %s in integration %s", i, what, integ.ID)}
	}
	if !uc.Enabled {
		return &ev, uc, &problem{status: "ignored", level: envelope.LevelSkipped, code: "USE_CASE_DISABLED",
			message: fmt.Sprintf("events[%d]: use case %s is disabled", i, uc.Slug)}
	}
	if msg := checkPayload(ev.Format, ev.Payload); msg != "" {
		return &ev, uc, &problem{status: "error", level: envelope.LevelError, code: "MALFORMED_PAYLOAD",
			message: fmt.Sprintf("events[%d].payload: %s", i, msg)}
	}
	return &ev, uc, nil
}

// route finds the inbound use case: by slug when given, else by name, then by slug equal to the name.
func route(snap *registry.Snapshot, integ *registry.Integration, slug *string, name string) *registry.UseCase {
	var uc *registry.UseCase
	var ok bool
	switch {
	case slug != nil:
		uc, ok = snap.UseCaseBySlug(integ.OrgID, integ.ID, *slug)
	default:
		if uc, ok = snap.UseCaseByName(integ.OrgID, integ.ID, name); !ok {
			uc, ok = snap.UseCaseBySlug(integ.OrgID, integ.ID, name)
		}
	}
	if !ok || uc.Type != registry.TypeInbound {
		return nil
	}
	return uc
}

// checkPayload accepts a JSON string of at least 2 characters or an object with at least one key;
// a string payload must parse in its format.
func checkPayload(format string, raw json.RawMessage) string {
	trimmed := strings.TrimSpace(string(raw))
	switch {
	case trimmed == "" || trimmed == "null":
		return "required"
	case trimmed[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil || len(s) < 2 {
			return "a string payload must have at least 2 characters"
		}
		if format == "xml" {
			if _, err := xmljson.Convert([]byte(s)); err != nil {
				return err.Error()
			}
		} else if !json.Valid([]byte(s)) {
			return "not valid JSON"
		}
	case trimmed[0] == '{':
		if format == "xml" {
			return "an XML payload must be a string"
		}
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

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
