package fileproxy

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
	"github.com/erpstream/erpstream/secureproxy"
)

// download records one download in the file_proxy lane: outcome, latency, size and the step that
// failed (never a secret or the file).
type download struct {
	s       *Service
	m       envelope.MonitoringEvent
	started time.Time
	known   bool // the link names a real use case: rows go to its lane
	route   *secureproxy.Route
}

func (s *Service) newDownload(integ *registry.Integration, uc *registry.UseCase) *download {
	now := s.Now()
	id := ids.EventID(now)
	d := &download{s: s, started: now}
	if integ != nil && uc != nil {
		d.known = true
		d.m = envelope.MonitoringEvent{ID: ids.NameUUID("monitoring", integ.OrgID, id, "file_proxy"), OrgID: integ.OrgID,
			IntegrationID: integ.ID, EventID: id, CorrelationID: id, UseCaseID: uc.ID, UseCaseType: registry.TypeFileProxy}
	}
	return d
}

func (d *download) fail(c *gin.Context, status int, code, message string, step int) {
	d.write(code, message, step, 0)
	httpapi.Abort(c, status, code, message)
}

func (d *download) ok(size int64) { d.write(CodeOK, "file sent", -1, size) }

func (d *download) write(code, message string, step int, size int64) {
	if !d.known || d.s.Producer == nil {
		return
	}
	level := envelope.LevelError
	if code == CodeOK {
		level = envelope.LevelSuccess
	}
	now := d.s.Now()
	detail := map[string]any{"latency_ms": now.Sub(d.started).Milliseconds(), "size_bytes": size}
	if step >= 0 {
		detail["step"] = step
	}
	d.m.Level, d.m.Code, d.m.Message, d.m.CreatedAtMs = level, code, message, now.UnixMilli()
	d.m.Detail, _ = json.Marshal(detail)
	d.s.Producer.TryProduce(context.Background(), envelope.CallRecord(d.s.Topics.Monitoring, &d.m), func(_ *kgo.Record, err error) {
		if err != nil {
			d.s.Log.Warn("file proxy monitoring row not stored", "err", err)
		}
	})
}

// linkLimiter counts requests per link and client in one-minute windows.
type linkLimiter struct {
	now  func() time.Time
	mu   sync.Mutex
	seen map[string]*linkWindow
}

type linkWindow struct {
	start time.Time
	n     int
}

const maxTrackedLinks = 100_000

func (l *linkLimiter) allow(key string, perMinute int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if len(l.seen) >= maxTrackedLinks {
		for k, w := range l.seen {
			if now.Sub(w.start) > time.Minute {
				delete(l.seen, k)
			}
		}
		if len(l.seen) >= maxTrackedLinks {
			return false // under a flood of distinct links, refuse rather than grow
		}
	}
	w, ok := l.seen[key]
	if !ok || now.Sub(w.start) > time.Minute {
		l.seen[key] = &linkWindow{start: now, n: 1}
		return true
	}
	w.n++
	return w.n <= perMinute
}
