package console

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// integration is what the pages read of GET /v2/integrations.
type integration struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	UseCases []useCase `json:"use_cases"`
}

type useCase struct {
	ID            string          `json:"id"`
	Name          string          `json:"name"`
	Slug          string          `json:"slug"`
	Type          string          `json:"type"`
	Enabled       bool            `json:"enabled"`
	UpdatedAt     string          `json:"updated_at"`
	Configuration json.RawMessage `json:"configuration"`
	// ChangeDescription says what the last change did (the version's note).
	ChangeDescription string `json:"change_description"`
}

type stats struct {
	Total       int64    `json:"total_events"`
	Success     int64    `json:"success_count"`
	Error       int64    `json:"error_count"`
	Warning     int64    `json:"warning_count"`
	Skipped     int64    `json:"skipped_count"`
	SuccessRate *float64 `json:"success_rate"`
	LastErrorAt *string  `json:"last_error_at"`
	Breakdown   []struct {
		Code  string `json:"code"`
		Total int64  `json:"total_events"`
	} `json:"breakdown"`
}

// monitoringRow is one row of the monitoring trail (v2 events).
type monitoringRow struct {
	ID            string          `json:"id"`
	EventID       string          `json:"event_id"`
	CorrelationID string          `json:"correlation_id"`
	UseCaseID     string          `json:"use_case_id"`
	UseCaseType   string          `json:"use_case_type"`
	Level         string          `json:"level"`
	Code          string          `json:"code"`
	Message       string          `json:"message"`
	Detail        json.RawMessage `json:"detail"`
	CreatedAt     string          `json:"created_at"`
}

type eventsPage struct {
	Data       []monitoringRow `json:"data"`
	NextCursor json.RawMessage `json:"next_cursor"`
	HasMore    bool            `json:"has_more"`
}

// integrationHealth is one line of the integrations page.
type integrationHealth struct {
	integration
	Stats     stats
	LastError *monitoringRow
	Problem   string
}

// perPage is the integrations one page shows with their health (two queries each: the page
// stays well under 300 ms at 10 M monitoring rows, see make bench).
const perPage = 20

func (h *Handler) integrationsPage(c *gin.Context) {
	who := callerOf(c)
	a := h.call(c, who, http.MethodGet, "/v2/integrations", nil)
	if !a.OK() {
		h.failed(c, a)
		return
	}
	var list struct {
		Integrations []integration `json:"integrations"`
	}
	if err := a.decode(&list); err != nil {
		h.failed(c, &answer{Status: http.StatusBadGateway, Body: []byte(`{"message":"` + err.Error() + `"}`)})
		return
	}
	total := len(list.Integrations)
	pageNo, _ := strconv.Atoi(c.Query("page"))
	pages := max(1, (total+perPage-1)/perPage)
	pageNo = min(max(pageNo, 1), pages)
	list.Integrations = list.Integrations[(pageNo-1)*perPage : min(pageNo*perPage, total)]
	from := h.now().UTC().Add(-24 * time.Hour).Format(time.RFC3339)
	rows := make([]integrationHealth, len(list.Integrations))
	parallel(len(rows), 4, func(i int) {
		in := list.Integrations[i]
		rows[i].integration = in
		base := "/v2/integrations/" + url.PathEscape(in.ID) + "/monitoring"
		st := h.call(c, who, http.MethodPost, base+"/stats", gin.H{"from_date": from})
		if !st.OK() {
			rows[i].Problem = st.Problem()
			return
		}
		_ = st.decode(&rows[i].Stats)
		if rows[i].Stats.Error == 0 {
			return
		}
		ev := h.call(c, who, http.MethodPost, base+"/events", gin.H{"from_date": from, "level": "error", "limit": 1})
		var page eventsPage
		if ev.OK() && ev.decode(&page) == nil && len(page.Data) > 0 {
			rows[i].LastError = &page.Data[0]
		}
	})
	paging := gin.H{"Page": pageNo, "Pages": pages, "Total": total}
	if pageNo > 1 {
		paging["Prev"] = pageNo - 1
	}
	if pageNo < pages {
		paging["Next"] = pageNo + 1
	}
	h.render(c, http.StatusOK, "integrations", h.viewFor(c, "Integrations", gin.H{"Rows": rows, "Paging": paging}))
}

// integration reads one integration of the operator's org with its use cases; another org's, or
// none, has answered the not-found page when it reports false.
func (h *Handler) integration(c *gin.Context, who caller, id string) (integration, bool) {
	var in integration
	a := h.call(c, who, http.MethodGet, "/v2/integrations/"+url.PathEscape(id), nil)
	if !a.OK() {
		h.failed(c, a)
		return in, false
	}
	if err := a.decode(&in); err != nil {
		h.failed(c, &answer{Status: http.StatusBadGateway, Body: []byte(`{"message":"undecodable integration"}`)})
		return in, false
	}
	return in, true
}

// parallel runs fn for 0..n-1 with at most width at a time.
func parallel(n, width int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, width)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(i)
		}()
	}
	wg.Wait()
}

// timeRanges the integration page offers, with the interval of their charts.
var timeRanges = []struct {
	Name, Interval string
	Span           time.Duration
}{
	{"1h", "1m", time.Hour}, {"24h", "30m", 24 * time.Hour}, {"7d", "3h", 7 * 24 * time.Hour}, {"30d", "1d", 30 * 24 * time.Hour},
}

// lanes are the monitoring trail's kinds the charts show.
var lanes = []struct{ Type, Label string }{
	{"inbound", "Inbound events"}, {"outbound", "Outbound deliveries"}, {"managed_call", "Managed calls"}, {"secure_proxy", "Secure proxy"},
}

// eventFilter is the integration page's event list filter, as its form and links carry it.
type eventFilter struct {
	Range, Level, Code, UseCaseID, UseCaseType, EventID, CorrelationID, Cursor string
}

func filterOf(c *gin.Context) eventFilter {
	f := eventFilter{Range: c.DefaultQuery("range", "24h"), Level: c.Query("level"), Code: c.Query("code"), UseCaseID: c.Query("use_case_id"),
		UseCaseType: c.Query("use_case_type"), EventID: c.Query("event_id"), CorrelationID: c.Query("correlation_id"), Cursor: c.Query("cursor")}
	return f
}

// query is the filter as URL parameters, without the cursor unless asked.
func (f eventFilter) query(withCursor bool) string {
	q := url.Values{}
	for k, v := range map[string]string{"range": f.Range, "level": f.Level, "code": f.Code, "use_case_id": f.UseCaseID,
		"use_case_type": f.UseCaseType, "event_id": f.EventID, "correlation_id": f.CorrelationID} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if withCursor && f.Cursor != "" {
		q.Set("cursor", f.Cursor)
	}
	return q.Encode()
}

func (h *Handler) integrationPage(c *gin.Context) {
	who := callerOf(c)
	id := c.Param("integrationId")
	in, ok := h.integration(c, who, id)
	if !ok {
		return
	}
	f := filterOf(c)
	span, interval := 24*time.Hour, "30m"
	for _, r := range timeRanges {
		if r.Name == f.Range {
			span, interval = r.Span, r.Interval
		}
	}
	now := h.now().UTC()
	from, to := now.Add(-span).Format(time.RFC3339), now.Format(time.RFC3339)
	base := "/v2/integrations/" + url.PathEscape(in.ID) + "/monitoring"

	charts := make([]chart, len(lanes))
	var topErrors stats
	var page eventsPage
	var listProblem string
	parallel(len(lanes)+2, 3, func(i int) {
		switch {
		case i < len(lanes):
			ts := h.call(c, who, http.MethodPost, base+"/time-series", gin.H{"from_date": from, "to_date": to, "interval": interval,
				"use_case_type": lanes[i].Type})
			charts[i] = seriesChart(lanes[i].Label, ts)
		case i == len(lanes):
			st := h.call(c, who, http.MethodPost, base+"/stats", gin.H{"from_date": from, "to_date": to, "level": "error", "group_by": "code"})
			if st.OK() {
				_ = st.decode(&topErrors)
			}
		default:
			req := gin.H{"from_date": from, "to_date": to, "limit": 50}
			for k, v := range map[string]string{"level": f.Level, "code": f.Code, "use_case_type": f.UseCaseType, "event_id": f.EventID,
				"correlation_id": f.CorrelationID} {
				if v != "" {
					req[k] = v
				}
			}
			if f.UseCaseID != "" {
				req["use_case_id"] = f.UseCaseID
			}
			if f.Cursor != "" {
				if raw, err := base64.RawURLEncoding.DecodeString(f.Cursor); err == nil && json.Valid(raw) {
					req["cursor"] = json.RawMessage(raw)
				}
			}
			ev := h.call(c, who, http.MethodPost, base+"/events", req)
			if !ev.OK() {
				listProblem = ev.Problem()
				return
			}
			_ = ev.decode(&page)
		}
	})
	next := ""
	if page.HasMore && len(page.NextCursor) > 0 {
		nf := f
		nf.Cursor = base64.RawURLEncoding.EncodeToString(page.NextCursor)
		next = nf.query(true)
	}
	sortBreakdown(&topErrors)
	h.render(c, http.StatusOK, "integration", h.viewFor(c, in.Name, gin.H{
		"Integration": in, "Charts": charts, "TopErrors": topErrors.Breakdown, "Events": page.Data, "Next": next,
		"Filter": f, "FilterQuery": f.query(false), "Ranges": timeRanges, "ListProblem": listProblem, "From": from, "To": to,
		"UseCaseNames": useCaseNames(in),
	}, crumb{"Integrations", Prefix + "/integrations"}))
}

func useCaseNames(in integration) map[string]string {
	out := map[string]string{}
	for _, u := range in.UseCases {
		out[u.ID] = firstNonEmpty(u.Name, u.Slug, u.ID)
	}
	return out
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

func sortBreakdown(s *stats) {
	b := s.Breakdown
	for i := 1; i < len(b); i++ {
		for j := i; j > 0 && b[j].Total > b[j-1].Total; j-- {
			b[j], b[j-1] = b[j-1], b[j]
		}
	}
	if len(b) > 10 {
		s.Breakdown = b[:10]
	}
}

// eventPage is one event's trace: the monitoring rows of its event id, the payload as received,
// the entity writes its mapping made (the processed row's detail) and the outbound deliveries and
// acknowledgements that followed (rows of its correlation id in the outbound lane).
func (h *Handler) eventPage(c *gin.Context) {
	who := callerOf(c)
	id, eventID := c.Param("integrationId"), c.Param("eventId")
	integ, ok := h.integration(c, who, id)
	if !ok {
		return
	}
	base := "/v2/integrations/" + url.PathEscape(integ.ID) + "/monitoring"
	a := h.call(c, who, http.MethodGet, base+"/events/"+url.PathEscape(eventID)+"/associated", nil)
	if !a.OK() {
		h.failed(c, a)
		return
	}
	var trace struct {
		Rows    []monitoringRow `json:"monitoring_events"`
		Inbound *struct {
			EventID       string          `json:"event_id"`
			EventType     string          `json:"event_type"`
			ObjectType    string          `json:"object_type"`
			UseCaseID     string          `json:"use_case_id"`
			Format        string          `json:"format"`
			Payload       json.RawMessage `json:"payload"`
			CorrelationID string          `json:"correlation_id"`
			ReceivedAt    string          `json:"received_at"`
			Replay        bool            `json:"replay"`
		} `json:"inbound_event"`
	}
	_ = a.decode(&trace)
	if len(trace.Rows) == 0 && trace.Inbound == nil {
		h.failed(c, &answer{Status: http.StatusNotFound})
		return
	}
	var writes []entityWrite
	correlation, since := "", ""
	for _, r := range trace.Rows {
		correlation = firstNonEmpty(correlation, r.CorrelationID)
		since = firstNonEmpty(since, r.CreatedAt)
		writes = append(writes, entityWrites(r.Detail)...)
	}
	if trace.Inbound != nil {
		correlation = firstNonEmpty(trace.Inbound.CorrelationID, correlation)
		since = firstNonEmpty(trace.Inbound.ReceivedAt, since)
	}
	var deliveries []monitoringRow
	var outboundProblem string
	if correlation != "" && since != "" {
		if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
			to := t.Add(14 * 24 * time.Hour)
			if now := h.now(); to.After(now) {
				to = now
			}
			ob := h.call(c, who, http.MethodPost, base+"/events", gin.H{"use_case_type": "outbound", "correlation_id": correlation,
				"from_date": t.Add(-time.Minute).UTC().Format(time.RFC3339Nano), "to_date": to.UTC().Format(time.RFC3339Nano), "limit": 100})
			var page eventsPage
			if ob.OK() && ob.decode(&page) == nil {
				deliveries = page.Data
			} else if !ob.OK() {
				outboundProblem = ob.Problem()
			}
		}
	}
	h.render(c, http.StatusOK, "event", h.viewFor(c, "Event "+eventID, gin.H{
		"Integration": integ, "EventID": eventID, "Rows": trace.Rows, "Inbound": trace.Inbound, "Writes": writes,
		"Deliveries": deliveries, "OutboundProblem": outboundProblem, "UseCaseNames": useCaseNames(integ),
	}, crumb{"Integrations", Prefix + "/integrations"}, crumb{integ.Name, Prefix + "/integrations/" + url.PathEscape(integ.ID)}))
}

// entityWrite is one entry of a processed row's detail.entities.
type entityWrite struct {
	Schema string `json:"entity_schema"`
	ID     string `json:"entity_id"`
	Op     string `json:"op"`
}

func entityWrites(detail json.RawMessage) []entityWrite {
	if len(detail) == 0 {
		return nil
	}
	var d struct {
		Entities []json.RawMessage `json:"entities"`
	}
	if json.Unmarshal(detail, &d) != nil {
		return nil
	}
	out := make([]entityWrite, 0, len(d.Entities))
	for _, raw := range d.Entities {
		var w entityWrite
		if json.Unmarshal(raw, &w) == nil {
			out = append(out, w)
		}
	}
	return out
}
