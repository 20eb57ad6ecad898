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
	"io"
	"log/slog"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
	"github.com/erpstream/erpstream/internal/logctx"
	"github.com/erpstream/erpstream/internal/quota"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/internal/tracing"
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
	// Metrics registers erpstream_ingest_events_total (nil: not exported).
	Metrics prometheus.Registerer
	// Budgets are the per-org budgets in events, bytes and bytes in flight (nil: none).
	Budgets *quota.Budgets
}

// Service is the ingest HTTP service.
type Service struct {
	cfg    Config
	log    *slog.Logger
	clock  ids.MonotonicMicros
	events *prometheus.CounterVec // by per-event result: success, error, skipped, ignored, not_stored
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
	if cfg.Metrics == nil {
		cfg.Metrics = prometheus.NewRegistry()
	}
	events := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_ingest_events_total",
		Help: "Events answered by ingest, by per-event result (not_stored: Kafka did not acknowledge)."}, []string{"result"})
	if err := cfg.Metrics.Register(events); err != nil {
		return nil, fmt.Errorf("ingest metrics: %w", err)
	}
	return &Service{cfg: cfg, log: cfg.Log.With("component", "ingest"), events: events}, nil
}

// Register mounts the event routes on an authenticated router group.
func (s *Service) Register(r gin.IRouter) {
	perm := httpapi.Require("erp:events")
	r.POST("/v3/erp/updates/events", perm, s.eventsV3)
	r.POST("/v2/erp/updates/events", perm, s.eventsV2)
	r.POST("/v1/erp/updates/events", perm, s.eventsV1)
	r.POST("/v3/erp/updates/events/ndjson", httpapi.StreamIn(), perm, s.eventsNDJSON)
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

// readRequest reads and validates the body in one pass; false means answered (400/413).
func readRequest(c *gin.Context) (*request, bool) {
	body, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			httpapi.Abort(c, http.StatusRequestEntityTooLarge, httpapi.CodePayloadTooLarge, "request body exceeds 4 MB")
		} else {
			bad(c, "reading the body: %v", err)
		}
		return nil, false
	}
	req, err := parseRequest(body)
	if err != nil {
		bad(c, "%v", err)
		return nil, false
	}
	return req, true
}

func parseRequest(body []byte) (*request, error) {
	end, err := skipValue(body, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("malformed JSON body: %v", err)
	}
	if skipWS(body, end) != len(body) {
		return nil, errors.New("malformed JSON body: trailing data after the JSON value")
	}
	if body[skipWS(body, 0)] != '{' {
		return nil, errors.New("malformed JSON body: must be an object")
	}
	req := &request{}
	err = eachMember(body, func(key string, raw []byte) error {
		var err error
		switch key {
		case "integration_id":
			req.IntegrationID, err = stringField(key, raw)
		case "app_id":
			req.AppID, err = stringField(key, raw)
		case "component_id":
			req.ComponentID, err = stringField(key, raw)
		case "correlation_id":
			req.CorrelationID, err = stringField(key, raw)
		case "meta":
			if raw[0] == 'n' {
				return nil
			}
			if raw[0] != '{' {
				return errors.New("meta: must be an object")
			}
			req.Meta = &meta{}
			err = eachMember(raw, func(k string, v []byte) error {
				if k == "correlation_id" {
					var err error
					req.Meta.CorrelationID, err = stringField("meta.correlation_id", v)
					return err
				}
				return nil
			})
		case "events":
			if raw[0] == 'n' {
				return nil
			}
			if raw[0] != '[' {
				return errors.New("events: must be an array")
			}
			req.Events = []json.RawMessage{}
			err = eachElement(raw, func(e []byte) error {
				req.Events = append(req.Events, e)
				return nil
			})
		}
		return err
	})
	return req, err
}

func stringField(name string, raw []byte) (string, error) {
	if raw[0] == 'n' {
		return "", nil
	}
	if raw[0] != '"' {
		return "", fmt.Errorf("%s: must be a string", name)
	}
	return decodeString(raw)
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
	req, ok := readRequest(c)
	if !ok {
		return
	}
	integ, correlation, ok := s.envelope(c, version, req)
	if !ok {
		return
	}
	c.Request = c.Request.WithContext(logctx.WithCorrelationID(c.Request.Context(), correlation))
	org := httpapi.Principal(c).OrgID
	results, records := s.prepare(org, integ, version, correlation, req.Events, 0)
	if len(records) > 0 {
		ctx, cancel := context.WithTimeout(c.Request.Context(), s.cfg.AckTimeout)
		defer cancel()
		release, ok := s.admit(c, ctx, org, records)
		if !ok {
			return
		}
		defer release()
		tracing.Inject(c.Request.Context(), records...)
		if err := s.cfg.Producer.ProduceSync(ctx, records...).FirstErr(); err != nil {
			s.log.WarnContext(c, "events not acknowledged by kafka; answering 503", "integration_id", integ.ID,
				"records", len(records), "err", err)
			c.Header("Retry-After", "5")
			httpapi.Abort(c, http.StatusServiceUnavailable, httpapi.CodeUnavailable,
				"events could not be stored; retry the request (deduplication ids make the retry safe)")
			s.events.WithLabelValues("not_stored").Add(float64(len(results)))
			return
		}
	}
	for _, r := range results {
		s.events.WithLabelValues(r.Status).Inc()
	}
	c.JSON(http.StatusOK, gin.H{"results": results})
}

// envelope checks the request-level fields and resolves the integration; false means answered.
// admit spends the org's budgets for records, or answers 429 and stores nothing: events and
// bytes per minute, and a share of the producer's buffer (so one org's load cannot fill it and
// make every other org's requests fail).
func (s *Service) admit(c *gin.Context, ctx context.Context, org string, records []*kgo.Record) (release func(), ok bool) {
	if s.cfg.Budgets == nil {
		return func() {}, true
	}
	bytes := recordBytes(records)
	if held := s.cfg.Budgets.HeldBack(org); held > 0 {
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(held.Seconds()))))
		httpapi.Abort(c, http.StatusTooManyRequests, "RATE_LIMITED",
			"the org's events take more than its share of mapping time while other orgs' events wait (ERPSTREAM_ORG_MAPPING_SECONDS_PER_MIN); retry after the Retry-After seconds")
		return nil, false
	}
	if wait := s.cfg.Budgets.Take(org, len(records), bytes); wait > 0 {
		lim := s.cfg.Budgets.Limits()
		c.Header("Retry-After", strconv.Itoa(int(math.Ceil(wait.Seconds()))))
		httpapi.Abort(c, http.StatusTooManyRequests, "RATE_LIMITED", fmt.Sprintf(
			"the org's budget of %d events and %d bytes a minute is spent; retry after the Retry-After seconds", lim.EventsPerMinute, lim.BytesPerMinute))
		return nil, false
	}
	release, err := s.cfg.Budgets.Hold(ctx, org, bytes)
	if err != nil {
		c.Header("Retry-After", "1")
		httpapi.Abort(c, http.StatusTooManyRequests, "RATE_LIMITED",
			"the org has as many bytes in flight to Kafka as it may; retry after the Retry-After seconds")
		return nil, false
	}
	return release, true
}

func recordBytes(records []*kgo.Record) int64 {
	var n int64
	for _, r := range records {
		n += int64(len(r.Key) + len(r.Value))
	}
	return n
}

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
		e.Payload = ev.Payload // the literal as it arrived: validated, never re-encoded
		e.ReceivedAtUs = s.clock.Next(now)
		e.ConfigPosition = snap.Position()
		records = append(records, envelope.EventRecord(s.cfg.Topics.Events, &e))
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
func EventKey(e *envelope.Event) []byte { return envelope.RecordKey(e) }

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
	return envelope.MonitoringRecord(s.cfg.Topics.Monitoring, e, &m)
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
	ev, err := parseEvent(raw)
	if err != nil {
		return nil, nil, invalid("events[%d]: %v", i, err)
	}
	name := firstNonEmpty(ev.EventName, ev.ObjectType)
	switch version {
	case v3:
		if ev.UseCaseSlug == nil && name == "" {
			return ev, nil, invalid("events[%d]: use_case_slug or event_name is required", i)
		}
	default:
		if ev.ObjectType == "" && ev.UseCaseSlug == nil {
			return ev, nil, invalid("events[%d].object_type: required", i)
		}
		if ev.EventType == "" {
			return ev, nil, invalid("events[%d].event_type: required (CREATE, UPDATE or DELETE)", i)
		}
	}
	if ev.UseCaseSlug != nil && (len(*ev.UseCaseSlug) == 0 || len(*ev.UseCaseSlug) > 255 || !slugPattern.MatchString(*ev.UseCaseSlug)) {
		return ev, nil, invalid("events[%d].use_case_slug: %q must match ^[a-z0-9][a-z0-9_-]*$ (1 to 255 characters)", i, *ev.UseCaseSlug)
	}
	switch ev.EventType {
	case "", "CREATE", "UPDATE", "DELETE":
	default:
		return ev, nil, invalid("events[%d].event_type: must be CREATE, UPDATE or DELETE", i)
	}
	if ev.Timestamp == "" {
		return ev, nil, invalid("events[%d].timestamp: required (ISO 8601 date-time)", i)
	}
	if _, err := time.Parse(time.RFC3339Nano, ev.Timestamp); err != nil {
		return ev, nil, invalid("events[%d].timestamp: %q is not an ISO 8601 date-time", i, ev.Timestamp)
	}
	if ev.DeduplicationID != nil {
		if d := *ev.DeduplicationID; len(d) == 0 || len(d) > 255 || !dedupPattern.MatchString(d) {
			return ev, nil, invalid("events[%d].deduplication_id: must match ^[a-zA-Z0-9_-]+$ (1 to 255 characters)", i)
		}
	}
	if ev.Format == "" {
		ev.Format = "json"
	}
	if ev.Format != "json" && ev.Format != "xml" {
		return ev, nil, invalid("events[%d].format: must be json or xml", i)
	}
	// Route before checking the payload, so that a malformed payload is reported under its use case.
	uc := route(snap, integ, ev.UseCaseSlug, name)
	if uc == nil {
		what := "use_case_slug " + deref(ev.UseCaseSlug)
		if ev.UseCaseSlug == nil {
			what = "event_name " + name
		}
		return ev, nil, &problem{status: "ignored", level: envelope.LevelSkipped, code: "EVENT_NOT_CONFIGURED",
			message: fmt.Sprintf("events[%d]: no inbound use case for %s in integration %s", i, what, integ.ID)}
	}
	if !uc.Enabled {
		return ev, uc, &problem{status: "ignored", level: envelope.LevelSkipped, code: "USE_CASE_DISABLED",
			message: fmt.Sprintf("events[%d]: use case %s is disabled", i, uc.Slug)}
	}
	if msg := checkPayload(ev.Format, ev.Payload); msg != "" {
		return ev, uc, &problem{status: "error", level: envelope.LevelError, code: "MALFORMED_PAYLOAD",
			message: fmt.Sprintf("events[%d].payload: %s", i, msg)}
	}
	return ev, uc, nil
}

func parseEvent(raw []byte) (*eventIn, error) {
	if raw[0] != '{' {
		return nil, errors.New("must be an event object")
	}
	ev := &eventIn{}
	err := eachMember(raw, func(key string, v []byte) error {
		var err error
		switch key {
		case "event_name":
			ev.EventName, err = stringField(key, v)
		case "object_type":
			ev.ObjectType, err = stringField(key, v)
		case "use_case_slug":
			if v[0] != 'n' {
				var slug string
				slug, err = stringField(key, v)
				ev.UseCaseSlug = &slug
			}
		case "event_type":
			ev.EventType, err = stringField(key, v)
		case "timestamp":
			ev.Timestamp, err = stringField(key, v)
		case "format":
			ev.Format, err = stringField(key, v)
		case "payload":
			ev.Payload = v
		case "deduplication_id":
			if v[0] != 'n' {
				var d string
				d, err = stringField(key, v)
				ev.DeduplicationID = &d
			}
		case "correlation_id":
			ev.CorrelationID, err = stringField(key, v)
		}
		return err
	})
	return ev, err
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
	switch {
	case len(raw) == 0 || raw[0] == 'n':
		return "required"
	case raw[0] == '"':
		text, err := decodeString(raw)
		if err != nil || len(text) < 2 {
			return "a string payload must have at least 2 characters"
		}
		if format == "xml" {
			if _, err := xmljson.Convert([]byte(text)); err != nil {
				return err.Error()
			}
		} else if end, err := skipValue([]byte(text), 0, 0); err != nil || skipWS([]byte(text), end) != len(text) {
			return "not valid JSON"
		}
	case raw[0] == '{':
		if format == "xml" {
			return "an XML payload must be a string"
		}
		if i := skipWS(raw, 1); i < len(raw) && raw[i] == '}' {
			return "an object payload must have at least one property"
		}
	default:
		return "must be a string or an object"
	}
	return ""
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
