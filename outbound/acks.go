package outbound

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/kafkax"
)

// ackEntry is one delivery waiting for its acknowledgement: the value of its record in the
// acks topic (keyed by ack id). Confirming or timing out deletes it (a tombstone).
type ackEntry struct {
	AckID         string `json:"ack_id"`
	OrgID         string `json:"org_id"`
	IntegrationID string `json:"integration_id"`
	UseCaseID     string `json:"use_case_id"`
	DeliveryID    string `json:"delivery_id"`
	EventName     string `json:"event_name"`
	WebhookID     string `json:"webhook_id,omitempty"`
	MappingID     string `json:"mapping_id"`
	EntityID      string `json:"entity_id,omitempty"`
	CorrelationID string `json:"correlation_id,omitempty"`
	DeadlineMs    int64  `json:"deadline_ms"`
	partition     int32
}

// AckTable is the acknowledgement table, read whole from the acks topic by every process that
// serves the acknowledgement route or delivers: an ack confirmed anywhere is gone everywhere.
// The owner of entities partition p times out the pending acks of acks partition p.
type AckTable struct {
	Kafka    kafkax.Config
	Topics   kafkax.Topics
	Producer *kgo.Client
	Log      *slog.Logger
	// Window is how long an acknowledgement may take (default 24 h); MaxPendingPerOrg caps an
	// org's pending acks (default 100,000): past it, deliveries go untracked.
	Window           time.Duration
	MaxPendingPerOrg int
	Now              func() time.Time
	// Metrics registers erpstream_outbound_acks_total{outcome} and erpstream_outbound_acks_pending.
	Metrics prometheus.Registerer

	outcomes *prometheus.CounterVec

	mu      sync.Mutex
	entries map[string]*ackEntry
	perOrg  map[string]int
	owned   map[int32]bool
	ready   chan struct{}
	once    sync.Once
}

func (t *AckTable) init() {
	t.once.Do(func() {
		t.entries, t.perOrg, t.owned = map[string]*ackEntry{}, map[string]int{}, map[int32]bool{}
		t.ready = make(chan struct{})
		if t.Window <= 0 {
			t.Window = DefaultAckWindow
		}
		if t.MaxPendingPerOrg <= 0 {
			t.MaxPendingPerOrg = DefaultMaxPendingAcksPerOrg
		}
		if t.Now == nil {
			t.Now = time.Now
		}
		if t.Log == nil {
			t.Log = slog.Default()
		}
		t.outcomes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "erpstream_outbound_acks_total",
			Help: "Acknowledgements by outcome: confirmed, timeout (ACK_TIMEOUT), untracked (an org over its pending cap)."}, []string{"outcome"})
		pending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "erpstream_outbound_acks_pending",
			Help: "Deliveries waiting for their acknowledgement (all orgs)."}, func() float64 {
			t.mu.Lock()
			defer t.mu.Unlock()
			return float64(len(t.entries))
		})
		for _, o := range []string{"confirmed", "timeout", "untracked"} {
			t.outcomes.WithLabelValues(o)
		}
		if t.Metrics != nil {
			if err := t.Metrics.Register(t.outcomes); err != nil {
				t.Log.Warn("ack metrics not registered", "err", err)
			}
			_ = t.Metrics.Register(pending)
		}
	})
}

// Ready is closed once the table has read the topic to the end it had at start-up.
func (t *AckTable) Ready() <-chan struct{} { t.init(); return t.ready }

// Run reads the acks topic until ctx ends.
func (t *AckTable) Run(ctx context.Context) error {
	t.init()
	cl, err := kgo.NewClient(append(append(t.Kafka.BaseOpts(t.Log), kafkax.ChangelogOpts()...),
		kgo.ConsumeTopics(t.Topics.Acks),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)...)
	if err != nil {
		return fmt.Errorf("ack table client: %w", err)
	}
	defer cl.Close()
	apply := func(r *kgo.Record) {
		if !r.Attrs.IsControl() {
			t.apply(r)
		}
	}
	if _, err := kafkax.CatchUp(ctx, cl, t.Log, t.Topics.Acks, nil, apply); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("ack table: %w", err)
	}
	close(t.ready)
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachRecord(apply)
	}
}

func (t *AckTable) apply(rec *kgo.Record) {
	id := string(rec.Key)
	t.mu.Lock()
	defer t.mu.Unlock()
	if rec.Value == nil {
		t.removeLocked(id)
		return
	}
	var e ackEntry
	if err := json.Unmarshal(rec.Value, &e); err != nil || e.AckID != id {
		t.Log.Error("undecodable ack record; skipped", "partition", rec.Partition, "offset", rec.Offset)
		return
	}
	e.partition = rec.Partition
	if _, ok := t.entries[id]; !ok {
		t.perOrg[e.OrgID]++
	}
	t.entries[id] = &e
}

func (t *AckTable) removeLocked(id string) *ackEntry {
	e, ok := t.entries[id]
	if !ok {
		return nil
	}
	delete(t.entries, id)
	if t.perOrg[e.OrgID]--; t.perOrg[e.OrgID] <= 0 {
		delete(t.perOrg, e.OrgID)
	}
	return e
}

// own records which partitions' timeouts this instance handles.
func (t *AckTable) own(parts []int32, owned bool) {
	t.init()
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, p := range parts {
		if owned {
			t.owned[p] = true
		} else {
			delete(t.owned, p)
		}
	}
}

// newAckID is 192 random bits: the ack id is the capability that confirms a delivery.
func newAckID() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "ack_" + base64.RawURLEncoding.EncodeToString(b[:])
}

// track records a delivered payload's ack id as pending; false when the org has too many
// pending (the delivery is then untracked, said in monitoring).
func (t *AckTable) track(ctx context.Context, s *Service, d *Delivery) bool {
	t.init()
	t.mu.Lock()
	full := t.perOrg[d.OrgID] >= t.MaxPendingPerOrg
	t.mu.Unlock()
	if full {
		t.outcomes.WithLabelValues("untracked").Inc()
		s.record(ctx, d, row{level: envelope.LevelWarning, code: CodeAckUntracked, key: CodeAckUntracked,
			message: fmt.Sprintf("the org has %d acknowledgements pending; this delivery is not tracked", t.MaxPendingPerOrg), detail: baseDetail(d)})
		return false
	}
	e := &ackEntry{AckID: d.AckID, OrgID: d.OrgID, IntegrationID: d.IntegrationID, UseCaseID: d.UseCaseID, DeliveryID: d.ID,
		EventName: d.EventName, WebhookID: d.WebhookID, MappingID: d.MappingID, EntityID: d.EntityID, CorrelationID: d.CorrelationID,
		DeadlineMs: t.Now().Add(t.Window).UnixMilli()}
	value, _ := json.Marshal(e)
	rec := &kgo.Record{Topic: t.Topics.Acks, Key: []byte(e.AckID), Value: value}
	if err := t.Producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		s.log.Warn("ack not recorded; the delivery is untracked", "err", err)
		return false
	}
	t.apply(rec)
	return true
}

// ErrUnknownAck is an ack id that is not pending: never issued, confirmed already or expired.
var ErrUnknownAck = errors.New("unknown ack id")

// Acknowledge confirms a pending delivery: the record is deleted and ACK_CONFIRMED written.
func (t *AckTable) Acknowledge(ctx context.Context, ackID string) error {
	t.init()
	t.mu.Lock()
	e := t.removeLocked(ackID)
	t.mu.Unlock()
	if e == nil {
		return ErrUnknownAck
	}
	if t.Now().UnixMilli() > e.DeadlineMs {
		return ErrUnknownAck // the sweeper writes its timeout
	}
	if err := t.Producer.ProduceSync(ctx, &kgo.Record{Topic: t.Topics.Acks, Key: []byte(ackID)}).FirstErr(); err != nil {
		t.mu.Lock()
		t.entries[ackID] = e
		t.perOrg[e.OrgID]++
		t.mu.Unlock()
		return err
	}
	t.outcomes.WithLabelValues("confirmed").Inc()
	t.monitor(ctx, e, envelope.LevelSuccess, CodeAckConfirmed, "acknowledged: "+e.DeliveryID)
	return nil
}

// sweep times out the owned partitions' expired acks every few seconds.
func (t *AckTable) sweep(ctx context.Context, s *Service) {
	t.init()
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case <-t.ready:
		default:
			continue
		}
		now := t.Now().UnixMilli()
		var expired []*ackEntry
		t.mu.Lock()
		for id, e := range t.entries {
			if e.DeadlineMs < now && t.owned[e.partition] {
				expired = append(expired, t.removeLocked(id))
			}
		}
		t.mu.Unlock()
		for _, e := range expired {
			if err := t.Producer.ProduceSync(ctx, &kgo.Record{Topic: t.Topics.Acks, Key: []byte(e.AckID)}).FirstErr(); err != nil {
				if ctx.Err() == nil {
					s.log.Warn("ack timeout not recorded; retried", "err", err)
				}
				t.mu.Lock()
				t.entries[e.AckID] = e
				t.perOrg[e.OrgID]++
				t.mu.Unlock()
				continue
			}
			t.outcomes.WithLabelValues("timeout").Inc()
			t.monitor(ctx, e, envelope.LevelWarning, CodeAckTimeout, "no acknowledgement of "+e.DeliveryID+" within "+t.Window.String())
		}
	}
}

func (t *AckTable) monitor(ctx context.Context, e *ackEntry, level envelope.Level, code, msg string) {
	detail, _ := json.Marshal(map[string]any{"delivery_id": e.DeliveryID, "event_name": e.EventName, "webhook_config_id": e.WebhookID,
		"mapping_id": e.MappingID, "entity_id": e.EntityID})
	m := &envelope.MonitoringEvent{ID: ids.NameUUID("monitoring", e.OrgID, e.DeliveryID, "outbound", code, e.AckID), OrgID: e.OrgID,
		IntegrationID: e.IntegrationID, EventID: e.DeliveryID, CorrelationID: e.CorrelationID, UseCaseID: e.UseCaseID,
		UseCaseType: "outbound", Level: level, Code: code, Message: msg, Detail: detail, CreatedAtMs: t.Now().UnixMilli()}
	if err := t.Producer.ProduceSync(ctx, envelope.CallRecord(t.Topics.Monitoring, m)).FirstErr(); err != nil {
		t.Log.Warn("ack monitoring row not stored", "code", code, "err", err)
	}
}
