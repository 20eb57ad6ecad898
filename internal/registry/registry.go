// Package registry is erpstream's configuration store: integrations and use cases live in one
// compacted, single-partition Kafka topic (the log is the source of truth) and every service
// materializes it in memory. Readers get immutable snapshots without locks; writers wait until
// their own write is visible (read-your-writes), as Kafka Connect's and Schema Registry's stores do.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/auth"
)

// Snapshot is an immutable view of all configuration. Never modify one that was published.
type Snapshot struct {
	// Every key starts with the org: ids may be chosen by clients, so one org's id can equal
	// another's, and neither may replace, hide or delete the other's object.
	integrations map[string]*Integration // org + "/" + id
	useCases     map[string]*UseCase     // org + "/" + id
	bySlug       map[string]*UseCase     // org + "/" + integration id + "/" + slug
	byName       map[string]*UseCase     // org + "/" + integration id + "/" + name (legacy event_name routing)
	appMappings  map[string]*AppMapping  // org + "/" + app id + "/" + component id
	apiTokens    map[string]*APIToken    // token hash -> token
	env          map[string]*EnvVar      // org + "/" + key
	webhooks     map[string]*Webhook     // org + "/" + id
	// history is per use case (org + "/" + use case id), newest first, without configurations:
	// those stay in the config log and are read by offset when a page is shown (HistoryBodies),
	// so a busy use case's history costs memory by entry, not by configuration size.
	history map[string][]*HistoryEntry
	// position is the config topic offset the snapshot has read up to (exclusive).
	position int64
}

// Position is how far into the configuration log this snapshot reaches: an event accepted under
// it is mapped by a registry at this position or later (Registry.WaitPosition).
func (s *Snapshot) Position() int64 { return s.position }

// APIToken finds a token by the hash of its secret.
func (s *Snapshot) APIToken(hash string) (*APIToken, bool) {
	t, ok := s.apiTokens[hash]
	return t, ok
}

// APITokens lists an org's tokens.
func (s *Snapshot) APITokens(org string) []*APIToken {
	var out []*APIToken
	for _, t := range s.apiTokens {
		if t.OrgID == org {
			out = append(out, t)
		}
	}
	sortByCreated(out, func(t *APIToken) (int64, string) { return t.CreatedAt.UnixNano(), t.ID })
	return out
}

// EnvVar returns one variable of an org's environment.
func (s *Snapshot) EnvVar(org, key string) (*EnvVar, bool) {
	v, ok := s.env[org+"/"+key]
	return v, ok
}

// EnvVars lists an org's environment, by key.
func (s *Snapshot) EnvVars(org string) []*EnvVar {
	var out []*EnvVar
	for _, v := range s.env {
		if v.OrgID == org {
			out = append(out, v)
		}
	}
	for i := 1; i < len(out); i++ {
		for j := i; j > 0 && out[j].Key < out[j-1].Key; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return out
}

// Webhook returns one of the org's webhook definitions.
func (s *Snapshot) Webhook(org, id string) (*Webhook, bool) {
	w, ok := s.webhooks[org+"/"+id]
	return w, ok
}

// Webhooks lists the org's webhook definitions, oldest first.
func (s *Snapshot) Webhooks(org string) []*Webhook {
	var out []*Webhook
	for _, w := range s.webhooks {
		if w.OrgID == org {
			out = append(out, w)
		}
	}
	sortByCreated(out, func(w *Webhook) (int64, string) { return w.CreatedAt.UnixNano(), w.ID })
	return out
}

// OutboundUseCases lists the org's outbound use cases, of every integration.
func (s *Snapshot) OutboundUseCases(org string) []*UseCase {
	var out []*UseCase
	for _, u := range s.useCases {
		if u.OrgID == org && u.Type == TypeOutbound {
			out = append(out, u)
		}
	}
	sortByCreated(out, func(u *UseCase) (int64, string) { return u.CreatedAt.UnixNano(), u.ID })
	return out
}

// AllOutboundUseCases lists every org's outbound use cases (the outbound service indexes them).
func (s *Snapshot) AllOutboundUseCases() []*UseCase {
	var out []*UseCase
	for _, u := range s.useCases {
		if u.Type == TypeOutbound {
			out = append(out, u)
		}
	}
	return out
}

// History lists a use case's history, newest first, without configurations (HistoryBodies
// reads them). The slice is shared: do not modify it.
func (s *Snapshot) History(org, useCaseID string) []*HistoryEntry {
	return s.history[org+"/"+useCaseID]
}

// AppMapping binds (app_id, component_id) to an integration for the v1 event endpoint.
type AppMapping struct {
	OrgID         string `json:"org_id"`
	AppID         string `json:"app_id"`
	ComponentID   string `json:"component_id"`
	IntegrationID string `json:"integration_id"`
}

// AppMapping returns the integration bound to an app and component.
func (s *Snapshot) AppMapping(org, appID, componentID string) (*AppMapping, bool) {
	m, ok := s.appMappings[org+"/"+appID+"/"+componentID]
	return m, ok
}

func appMappingKey(org, appID, componentID string) string {
	return "appmapping/" + org + "/" + appID + "/" + componentID
}

// PutAppMapping stores a binding.
func (r *Registry) PutAppMapping(ctx context.Context, m *AppMapping) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return r.put(ctx, appMappingKey(m.OrgID, m.AppID, m.ComponentID), b)
}

// DeleteAppMapping removes a binding.
func (r *Registry) DeleteAppMapping(ctx context.Context, org, appID, componentID string) error {
	return r.put(ctx, appMappingKey(org, appID, componentID), nil)
}

func emptySnapshot() *Snapshot {
	return &Snapshot{
		integrations: map[string]*Integration{},
		useCases:     map[string]*UseCase{},
		bySlug:       map[string]*UseCase{},
		byName:       map[string]*UseCase{},
		appMappings:  map[string]*AppMapping{},
		apiTokens:    map[string]*APIToken{},
		env:          map[string]*EnvVar{},
		webhooks:     map[string]*Webhook{},
		history:      map[string][]*HistoryEntry{},
	}
}

// Integration returns the org's integration with that id; another org's id is "not found".
func (s *Snapshot) Integration(org, id string) (*Integration, bool) {
	i, ok := s.integrations[org+"/"+id]
	if !ok || i.OrgID != org {
		return nil, false
	}
	return i, true
}

// Integrations lists the org's integrations, oldest first.
func (s *Snapshot) Integrations(org string) []*Integration {
	var out []*Integration
	for _, i := range s.integrations {
		if i.OrgID == org {
			out = append(out, i)
		}
	}
	sortByCreated(out, func(i *Integration) (int64, string) { return i.CreatedAt.UnixNano(), i.ID })
	return out
}

// UseCase returns the org's use case with that id.
func (s *Snapshot) UseCase(org, id string) (*UseCase, bool) {
	u, ok := s.useCases[org+"/"+id]
	if !ok || u.OrgID != org {
		return nil, false
	}
	return u, true
}

// UseCaseBySlug finds a use case of an integration by slug.
func (s *Snapshot) UseCaseBySlug(org, integrationID, slug string) (*UseCase, bool) {
	u, ok := s.bySlug[org+"/"+integrationID+"/"+slug]
	if !ok || u.OrgID != org {
		return nil, false
	}
	return u, true
}

// UseCaseByName finds a use case of an integration by name (legacy event_name routing).
func (s *Snapshot) UseCaseByName(org, integrationID, name string) (*UseCase, bool) {
	u, ok := s.byName[org+"/"+integrationID+"/"+name]
	if !ok || u.OrgID != org {
		return nil, false
	}
	return u, true
}

// UseCases lists an integration's use cases, oldest first.
func (s *Snapshot) UseCases(org, integrationID string) []*UseCase {
	var out []*UseCase
	for _, u := range s.useCases {
		if u.OrgID == org && u.IntegrationID == integrationID {
			out = append(out, u)
		}
	}
	sortByCreated(out, func(u *UseCase) (int64, string) { return u.CreatedAt.UnixNano(), u.ID })
	return out
}

func sortByCreated[T any](xs []T, key func(T) (int64, string)) {
	for i := 1; i < len(xs); i++ {
		for j := i; j > 0; j-- {
			a, aid := key(xs[j-1])
			b, bid := key(xs[j])
			if a < b || a == b && aid <= bid {
				break
			}
			xs[j-1], xs[j] = xs[j], xs[j-1]
		}
	}
}

// Record keys of the config topic.
func integrationKey(org, id string) string { return "integration/" + org + "/" + id }
func useCaseKey(org, id string) string     { return "usecase/" + org + "/" + id }

// apply folds one record into a private (not yet published) snapshot.
func (s *Snapshot) apply(key string, value []byte, offset int64) error {
	kind, _, ok := strings.Cut(key, "/")
	if !ok {
		return fmt.Errorf("config record key %q: no kind", key)
	}
	rest := strings.TrimPrefix(key, kind+"/")
	decode := func(into any) error {
		if err := json.Unmarshal(value, into); err != nil {
			return fmt.Errorf("config record %q: %w", key, err)
		}
		return nil
	}
	switch kind {
	case "apitoken":
		if value == nil {
			delete(s.apiTokens, rest)
			return nil
		}
		var t APIToken
		if err := decode(&t); err != nil {
			return err
		}
		s.apiTokens[rest] = &t
	case "env":
		if value == nil {
			delete(s.env, rest)
			return nil
		}
		var v EnvVar
		if err := decode(&v); err != nil {
			return err
		}
		s.env[rest] = &v
	case "webhook":
		if value == nil {
			delete(s.webhooks, rest)
			return nil
		}
		var w Webhook
		if err := decode(&w); err != nil {
			return err
		}
		if rest != w.OrgID+"/"+w.ID {
			return fmt.Errorf("config record %q holds webhook %s of org %s", key, w.ID, w.OrgID)
		}
		s.webhooks[rest] = &w
	case "history":
		useCase, entryID := rest[:strings.LastIndexByte(rest, '/')+1], rest[strings.LastIndexByte(rest, '/')+1:]
		useCase = strings.TrimSuffix(useCase, "/")
		// Copy on write: published snapshots share the other use cases' slices.
		list := make([]*HistoryEntry, 0, len(s.history[useCase])+1)
		for _, h := range s.history[useCase] {
			if h.ID != entryID {
				list = append(list, h)
			}
		}
		if value != nil {
			var h HistoryEntry
			if err := decode(&h); err != nil {
				return err
			}
			if useCase != h.OrgID+"/"+h.UseCaseID {
				return fmt.Errorf("config record %q holds history of use case %s of org %s", key, h.UseCaseID, h.OrgID)
			}
			h.Configuration, h.offset = nil, offset
			list = append(list, &h)
			sortByCreated(list, func(h *HistoryEntry) (int64, string) { return -h.HistoryCreatedAt.UnixNano(), h.ID })
		}
		if len(list) == 0 {
			delete(s.history, useCase)
		} else {
			s.history[useCase] = list
		}
	case "appmapping":
		mk := strings.TrimPrefix(key, "appmapping/")
		if value == nil {
			delete(s.appMappings, mk)
			return nil
		}
		var m AppMapping
		if err := json.Unmarshal(value, &m); err != nil {
			return fmt.Errorf("config record %q: %w", key, err)
		}
		s.appMappings[mk] = &m
	case "integration":
		if value == nil {
			delete(s.integrations, rest)
			return nil
		}
		var i Integration
		if err := json.Unmarshal(value, &i); err != nil {
			return fmt.Errorf("config record %q: %w", key, err)
		}
		if rest != i.OrgID+"/"+i.ID {
			return fmt.Errorf("config record %q holds integration %s of org %s", key, i.ID, i.OrgID)
		}
		s.integrations[rest] = &i
	case "usecase":
		if old, ok := s.useCases[rest]; ok {
			s.unindex(old)
			delete(s.useCases, rest)
		}
		if value == nil {
			return nil
		}
		var u UseCase
		if err := json.Unmarshal(value, &u); err != nil {
			return fmt.Errorf("config record %q: %w", key, err)
		}
		if rest != u.OrgID+"/"+u.ID {
			return fmt.Errorf("config record %q holds use case %s of org %s", key, u.ID, u.OrgID)
		}
		s.useCases[rest] = &u
		// The first use case to claim a slug keeps it, so that two writers racing on one slug
		// resolve the same way in every service.
		if u.Slug != "" {
			if _, taken := s.bySlug[u.routeKey(u.Slug)]; !taken {
				s.bySlug[u.routeKey(u.Slug)] = &u
			}
		}
		if _, taken := s.byName[u.routeKey(u.Name)]; !taken {
			s.byName[u.routeKey(u.Name)] = &u
		}
	default:
		return fmt.Errorf("config record key %q: unknown kind", key)
	}
	return nil
}

func (s *Snapshot) unindex(u *UseCase) {
	if u.Slug != "" && s.bySlug[u.routeKey(u.Slug)] == u {
		delete(s.bySlug, u.routeKey(u.Slug))
	}
	if s.byName[u.routeKey(u.Name)] == u {
		delete(s.byName, u.routeKey(u.Name))
	}
}

// routeKey is the key a use case is routed by within its org and integration.
func (u *UseCase) routeKey(slugOrName string) string {
	return u.OrgID + "/" + u.IntegrationID + "/" + slugOrName
}

func (s *Snapshot) clone() *Snapshot {
	c := &Snapshot{
		integrations: make(map[string]*Integration, len(s.integrations)+1),
		useCases:     make(map[string]*UseCase, len(s.useCases)+1),
		bySlug:       make(map[string]*UseCase, len(s.bySlug)+1),
		byName:       make(map[string]*UseCase, len(s.byName)+1),
		appMappings:  make(map[string]*AppMapping, len(s.appMappings)+1),
	}
	for k, v := range s.appMappings {
		c.appMappings[k] = v
	}
	c.apiTokens = make(map[string]*APIToken, len(s.apiTokens)+1)
	for k, v := range s.apiTokens {
		c.apiTokens[k] = v
	}
	c.env = make(map[string]*EnvVar, len(s.env)+1)
	for k, v := range s.env {
		c.env[k] = v
	}
	c.webhooks = make(map[string]*Webhook, len(s.webhooks)+1)
	for k, v := range s.webhooks {
		c.webhooks[k] = v
	}
	c.history = make(map[string][]*HistoryEntry, len(s.history)+1)
	for k, v := range s.history {
		c.history[k] = v
	}
	for k, v := range s.integrations {
		c.integrations[k] = v
	}
	for k, v := range s.useCases {
		c.useCases[k] = v
	}
	for k, v := range s.bySlug {
		c.bySlug[k] = v
	}
	for k, v := range s.byName {
		c.byName[k] = v
	}
	return c
}

// Registry tails the config topic and publishes snapshots.
type Registry struct {
	topic    string
	opts     []kgo.Opt // to reach Kafka again (history reads)
	consumer *kgo.Client
	producer *kgo.Client
	log      *slog.Logger

	snap atomic.Pointer[Snapshot]

	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever applied moves
	applied int64         // next offset to read: everything below it is in the snapshot
	ready   chan struct{}
	runErr  error
}

// Config for a registry.
type Config struct {
	Topic string
	// Opts reach the Kafka cluster (seed brokers, client id, logger).
	Opts []kgo.Opt
	Log  *slog.Logger
}

// New creates a registry; call Run to start tailing, then WaitReady.
func New(cfg Config) (*Registry, error) {
	consumer, err := kgo.NewClient(append(cfg.Opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.Topic: {0: kgo.NewOffset().AtStart()}}),
		kgo.FetchMaxWait(200_000_000), // 200 ms: config changes become visible quickly
	)...)
	if err != nil {
		return nil, fmt.Errorf("registry consumer: %w", err)
	}
	producer, err := kgo.NewClient(append(cfg.Opts,
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.MaxProduceRequestsInflightPerBroker(1),
		kgo.DefaultProduceTopic(cfg.Topic),
	)...)
	if err != nil {
		consumer.Close()
		return nil, fmt.Errorf("registry producer: %w", err)
	}
	r := &Registry{
		topic:    cfg.Topic,
		opts:     cfg.Opts,
		consumer: consumer,
		producer: producer,
		log:      cfg.Log.With("component", "registry", "topic", cfg.Topic),
		changed:  make(chan struct{}),
		ready:    make(chan struct{}),
	}
	r.snap.Store(emptySnapshot())
	return r, nil
}

// Snapshot returns the current configuration.
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// Ready is closed once the registry has read the config topic up to its end at start-up.
func (r *Registry) Ready() <-chan struct{} { return r.ready }

// Run tails the config topic until ctx ends.
func (r *Registry) Run(ctx context.Context) error {
	end, err := r.endOffset(ctx)
	if err != nil {
		return nil // ctx ended
	}
	if end == 0 {
		close(r.ready)
	}
	r.log.Info("registry loading", "end_offset", end)
	for {
		fetches := r.consumer.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var fetchErr error
		fetches.EachError(func(t string, p int32, err error) {
			if !errors.Is(err, context.Canceled) {
				fetchErr = err
			}
		})
		if fetchErr != nil {
			r.log.Warn("registry fetch error", "err", fetchErr)
		}
		if fetches.NumRecords() == 0 {
			continue
		}
		next := r.snap.Load().clone()
		var last int64
		fetches.EachRecord(func(rec *kgo.Record) {
			if err := next.apply(string(rec.Key), rec.Value, rec.Offset); err != nil {
				r.log.Error("skipping unreadable config record", "offset", rec.Offset, "err", err)
			}
			last = rec.Offset
		})
		next.position = last + 1
		r.snap.Store(next)
		r.mu.Lock()
		r.applied = last + 1
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		select {
		case <-r.ready:
		default:
			if last+1 >= end {
				r.log.Info("registry ready", "integrations", len(next.integrations), "use_cases", len(next.useCases))
				close(r.ready)
			}
		}
	}
}

// writeTimeout bounds one configuration write, so an unreachable broker is an error, not a hang.
const writeTimeout = 15 * time.Second

// waitApplied blocks until the snapshot includes the record at offset.
// endOffset is where the config topic ends now, retried while the broker is unreachable (a
// process started during a broker restart waits for it instead of exiting).
func (r *Registry) endOffset(ctx context.Context) (int64, error) {
	adm := kadm.NewClient(r.consumer)
	backoff := 100 * time.Millisecond
	for {
		ends, err := adm.ListEndOffsets(ctx, r.topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			o, _ := ends.Lookup(r.topic, 0)
			return o.Offset, nil
		}
		r.log.Warn("cannot read where the config topic ends; retrying", "err", err, "retry_in", backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return 0, ctx.Err()
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// WaitPosition waits until the snapshot reaches position (Snapshot.Position) or ctx ends.
func (r *Registry) WaitPosition(ctx context.Context, position int64) error {
	if position <= 0 {
		return nil
	}
	return r.waitApplied(ctx, position-1)
}

func (r *Registry) waitApplied(ctx context.Context, offset int64) error {
	for {
		r.mu.Lock()
		applied, ch := r.applied, r.changed
		r.mu.Unlock()
		if applied > offset {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("waiting for configuration change to apply: %w", ctx.Err())
		}
	}
}

// put writes one record with acks=all and returns once every reader of this process sees it.
func (r *Registry) put(ctx context.Context, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	rec := &kgo.Record{Key: []byte(key), Value: value}
	if err := r.producer.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return fmt.Errorf("write configuration: %w", err)
	}
	return r.waitApplied(ctx, rec.Offset)
}

// PutIntegration stores an integration.
func (r *Registry) PutIntegration(ctx context.Context, i *Integration) error {
	b, err := json.Marshal(i)
	if err != nil {
		return err
	}
	return r.put(ctx, integrationKey(i.OrgID, i.ID), b)
}

// PutUseCase stores a use case.
func (r *Registry) PutUseCase(ctx context.Context, u *UseCase) error {
	b, err := json.Marshal(u)
	if err != nil {
		return err
	}
	return r.put(ctx, useCaseKey(u.OrgID, u.ID), b)
}

// DeleteUseCase writes a tombstone for a use case and its history (history lives as long as the
// use case).
func (r *Registry) DeleteUseCase(ctx context.Context, org, id string) error {
	for _, h := range r.Snapshot().History(org, id) {
		if err := r.put(ctx, "history/"+org+"/"+id+"/"+h.ID, nil); err != nil {
			return err
		}
	}
	return r.put(ctx, useCaseKey(org, id), nil)
}

// DeleteIntegration writes tombstones for an integration, its use cases and its app mappings.
func (r *Registry) DeleteIntegration(ctx context.Context, org, id string) error {
	for _, m := range r.Snapshot().appMappings {
		if m.OrgID == org && m.IntegrationID == id {
			if err := r.DeleteAppMapping(ctx, org, m.AppID, m.ComponentID); err != nil {
				return err
			}
		}
	}
	for _, u := range r.Snapshot().UseCases(org, id) {
		if err := r.DeleteUseCase(ctx, org, u.ID); err != nil {
			return err
		}
	}
	return r.put(ctx, integrationKey(org, id), nil)
}

// Close releases the clients.
func (r *Registry) Close() {
	r.consumer.Close()
	r.producer.Close()
}

// PutAPIToken stores a token (by the hash of its secret).
func (r *Registry) PutAPIToken(ctx context.Context, t *APIToken) error {
	b, err := json.Marshal(t)
	if err != nil {
		return err
	}
	return r.put(ctx, "apitoken/"+t.Hash, b)
}

// DeleteAPIToken revokes a token.
func (r *Registry) DeleteAPIToken(ctx context.Context, hash string) error {
	return r.put(ctx, "apitoken/"+hash, nil)
}

// PutEnvVar stores an environment variable.
func (r *Registry) PutEnvVar(ctx context.Context, v *EnvVar) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return r.put(ctx, "env/"+v.OrgID+"/"+v.Key, b)
}

// DeleteEnvVar removes an environment variable.
func (r *Registry) DeleteEnvVar(ctx context.Context, org, key string) error {
	return r.put(ctx, "env/"+org+"/"+key, nil)
}

// PutWebhook stores a webhook definition.
func (r *Registry) PutWebhook(ctx context.Context, w *Webhook) error {
	b, err := json.Marshal(w)
	if err != nil {
		return err
	}
	return r.put(ctx, "webhook/"+w.OrgID+"/"+w.ID, b)
}

// DeleteWebhook removes a webhook definition.
func (r *Registry) DeleteWebhook(ctx context.Context, org, id string) error {
	return r.put(ctx, "webhook/"+org+"/"+id, nil)
}

// PutHistory appends a history entry.
func (r *Registry) PutHistory(ctx context.Context, h *HistoryEntry) error {
	b, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if err := r.put(ctx, "history/"+h.OrgID+"/"+h.UseCaseID+"/"+h.ID, b); err != nil {
		return err
	}
	// A use case keeps its newest MaxHistoryPerUseCase entries; older ones are deleted.
	entries := r.Snapshot().History(h.OrgID, h.UseCaseID)
	for _, old := range entries[min(len(entries), MaxHistoryPerUseCase):] {
		if err := r.put(ctx, "history/"+h.OrgID+"/"+h.UseCaseID+"/"+old.ID, nil); err != nil {
			return err
		}
	}
	return nil
}

// MaxHistoryPerUseCase is how many history entries a use case keeps (newest first).
var MaxHistoryPerUseCase = 200

// HistoryConfigurations reads the configurations of history entries from the config log (the
// snapshot holds entries without them), by entry id.
func (r *Registry) HistoryConfigurations(ctx context.Context, entries []*HistoryEntry) (map[string]json.RawMessage, error) {
	out := map[string]json.RawMessage{}
	if len(entries) == 0 {
		return out, nil
	}
	want := map[int64]string{}
	first := entries[0].offset
	for _, h := range entries {
		want[h.offset] = h.ID
		first = min(first, h.offset)
	}
	cl, err := kgo.NewClient(append(r.opts,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: {0: kgo.NewOffset().At(first)}}),
		kgo.FetchMaxWait(100*time.Millisecond),
	)...)
	if err != nil {
		return nil, fmt.Errorf("history reader: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	offsets := make([]int64, 0, len(want))
	for o := range want {
		offsets = append(offsets, o)
	}
	sort.Slice(offsets, func(i, j int) bool { return offsets[i] < offsets[j] })
	for i, o := range offsets {
		if i > 0 { // a page's entries are far apart in a busy log: jump, do not read between
			cl.SetOffsets(map[string]map[int32]kgo.EpochOffset{r.topic: {0: {Epoch: -1, Offset: o}}})
		}
		for done := false; !done; {
			fetches := cl.PollFetches(ctx)
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("reading history configurations: %w", err)
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				if id, ok := want[rec.Offset]; ok {
					var h HistoryEntry
					if json.Unmarshal(rec.Value, &h) == nil && h.ID == id {
						out[id] = h.Configuration
					}
				}
				done = done || rec.Offset >= o
			})
		}
	}
	return out, nil
}

// Authenticate resolves long-lived API tokens (the registry is an authenticator).
func (r *Registry) Authenticate(token string) (*auth.Principal, error) {
	t, ok := r.Snapshot().APIToken(auth.HashToken(token))
	if !ok {
		return nil, auth.ErrInvalidToken
	}
	return &auth.Principal{OrgID: t.OrgID, TokenID: t.ID, Permissions: auth.NormalizePermissions(t.Permissions)}, nil
}
