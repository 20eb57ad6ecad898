package console

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// A job is a long action (a bulk replay) running after its form was answered; its page shows the
// progress lines the API streams. Jobs live in the instance that started them, for an hour after
// they end, and only the org that started one sees it.

const (
	jobTimeout    = 2 * time.Hour
	jobKeptAfter  = time.Hour
	maxJobsPerOrg = 4
)

type job struct {
	ID    string
	org   string
	Title string
	Back  string

	mu       sync.Mutex
	progress jobProgress
	ended    time.Time
}

// jobProgress is what the page and its progress endpoint show.
type jobProgress struct {
	Replayed int    `json:"replayed"`
	Ignored  int    `json:"ignored"`
	Failed   int    `json:"failed"`
	Done     bool   `json:"done"`
	Running  bool   `json:"running"`
	Error    string `json:"error,omitempty"`
	Cursor   string `json:"cursor,omitempty"`
}

type jobs struct {
	mu   sync.Mutex
	byID map[string]*job
}

func newJobs() *jobs { return &jobs{byID: map[string]*job{}} }

// start registers a running job of org; nil when the org already runs maxJobsPerOrg.
func (js *jobs) start(org, title, back string) *job {
	js.mu.Lock()
	defer js.mu.Unlock()
	running := 0
	for id, j := range js.byID {
		j.mu.Lock()
		if !j.ended.IsZero() && time.Since(j.ended) > jobKeptAfter {
			delete(js.byID, id)
		} else if j.org == org && j.ended.IsZero() {
			running++
		}
		j.mu.Unlock()
	}
	if running >= maxJobsPerOrg {
		return nil
	}
	j := &job{ID: randomToken(), org: org, Title: title, Back: back, progress: jobProgress{Running: true}}
	js.byID[j.ID] = j
	return j
}

// get returns org's job; another org's id is not found.
func (js *jobs) get(org, id string) (*job, bool) {
	js.mu.Lock()
	defer js.mu.Unlock()
	j, ok := js.byID[id]
	if !ok || j.org != org {
		return nil, false
	}
	return j, true
}

func (j *job) snapshot() jobProgress {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.progress
}

func (j *job) update(fn func(p *jobProgress)) {
	j.mu.Lock()
	defer j.mu.Unlock()
	fn(&j.progress)
	if !j.progress.Running && j.ended.IsZero() {
		j.ended = time.Now()
	}
}

// runBulkReplay calls the bulk replay route and follows its NDJSON progress lines.
func (h *Handler) runBulkReplay(j *job, who caller, path string, body any) {
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	var pending []byte
	a := h.callStreaming(ctx, who, http.MethodPost, path, body, func(b []byte) {
		pending = append(pending, b...)
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				return
			}
			line := pending[:i]
			pending = pending[i+1:]
			var p jobProgress
			if json.Unmarshal(line, &p) == nil {
				j.update(func(cur *jobProgress) { p.Running = !p.Done && p.Error == ""; *cur = p })
			}
		}
	})
	j.update(func(cur *jobProgress) {
		if !a.OK() {
			cur.Error = a.Problem()
		}
		cur.Running = false
	})
	h.log.Info("console bulk replay ended", "org_id", j.org, "replayed", j.snapshot().Replayed, "error", j.snapshot().Error)
}

func (h *Handler) jobPage(c *gin.Context) {
	j, ok := h.jobs.get(principalOf(c).OrgID, c.Param("jobId"))
	if !ok {
		h.failed(c, &answer{Status: http.StatusNotFound})
		return
	}
	h.render(c, http.StatusOK, "job", h.viewFor(c, j.Title, gin.H{"Job": j, "Progress": j.snapshot()}))
}

func (h *Handler) jobProgress(c *gin.Context) {
	j, ok := h.jobs.get(principalOf(c).OrgID, c.Param("jobId"))
	if !ok {
		c.JSON(http.StatusNotFound, gin.H{"code": "NOT_FOUND", "message": "no such job"})
		return
	}
	c.JSON(http.StatusOK, j.snapshot())
}
