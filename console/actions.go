package console

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// Actions are forms (POST, CSRF-checked, confirmed in the browser first) that each call one API
// route with the operator's token; the API checks the permission, scopes to the org and writes
// the access log entry. The answer page says what happened, from the API's own answer.

// outcome is the result page of an action.
type outcome struct {
	Action  string
	OK      bool
	Problem string
	Lines   []outcomeLine
	Back    string
}

type outcomeLine struct {
	Text, Href string
}

func integrationPath(id string) string { return Prefix + "/integrations/" + url.PathEscape(id) }

// replayMax is the API's bound on one replay request (replay.MaxEventIDs).
const replayMax = 100

func (h *Handler) replay(c *gin.Context) {
	id := c.Param("integrationId")
	_ = c.Request.ParseForm()
	var eventIDs []string
	seen := map[string]bool{}
	for _, e := range c.Request.PostForm["event_id"] {
		if e = strings.TrimSpace(e); e != "" && !seen[e] {
			seen[e] = true
			eventIDs = append(eventIDs, e)
		}
	}
	o := outcome{Action: "Replay", Back: safeBack(c.PostForm("back"), integrationPath(id))}
	if len(eventIDs) == 0 || len(eventIDs) > replayMax {
		o.Problem = "choose 1 to 100 events to replay"
		h.render(c, http.StatusBadRequest, "outcome", h.viewFor(c, "Replay", o))
		return
	}
	a := h.call(c, callerOf(c), http.MethodPost, "/v1/integrations/"+url.PathEscape(id)+"/events/replay", gin.H{"event_ids": eventIDs})
	if !a.OK() {
		o.Problem = a.Problem()
		h.render(c, a.Status, "outcome", h.viewFor(c, "Replay", o))
		return
	}
	var res struct {
		Replayed int `json:"replayed"`
		Results  []struct {
			EventID    string `json:"event_id"`
			Status     string `json:"status"`
			NewEventID string `json:"new_event_id"`
			Message    string `json:"message"`
		} `json:"results"`
	}
	_ = a.decode(&res)
	o.OK = true
	for _, r := range res.Results {
		line := outcomeLine{Text: r.EventID + ": " + r.Status}
		if r.Message != "" {
			line.Text += " (" + r.Message + ")"
		}
		if r.NewEventID != "" {
			line.Text += " as " + r.NewEventID
			line.Href = integrationPath(id) + "/events/" + url.PathEscape(r.NewEventID)
		}
		o.Lines = append(o.Lines, line)
	}
	o.Lines = append([]outcomeLine{{Text: plural(res.Replayed, "event") + " queued for mapping again"}}, o.Lines...)
	h.render(c, http.StatusOK, "outcome", h.viewFor(c, "Replay", o))
}

// replayFailed starts a bulk replay of the integration's failed events in a time range and
// shows its progress page.
func (h *Handler) replayFailed(c *gin.Context) {
	id := c.Param("integrationId")
	from, to := c.PostForm("from_date"), c.PostForm("to_date")
	o := outcome{Action: "Replay failed events", Back: integrationPath(id)}
	if from == "" {
		o.Problem = "from_date: required"
		h.render(c, http.StatusBadRequest, "outcome", h.viewFor(c, o.Action, o))
		return
	}
	who := callerOf(c)
	j := h.jobs.start(principalOf(c).OrgID, "Replay of the failed events from "+shortTime(from)+" to "+shortTime(to), integrationPath(id))
	if j == nil {
		o.Problem = "your organization already runs 4 bulk replays in this console; wait for one to end"
		h.render(c, http.StatusTooManyRequests, "outcome", h.viewFor(c, o.Action, o))
		return
	}
	body := gin.H{"from_date": from, "to_date": to, "status": "error"}
	go h.runBulkReplay(j, who, "/v1/integrations/"+url.PathEscape(id)+"/events/replay/bulk", body)
	c.Redirect(http.StatusSeeOther, Prefix+"/jobs/"+j.ID)
}

func (h *Handler) setEnabled(c *gin.Context) {
	id, ucID := c.Param("integrationId"), c.Param("useCaseId")
	enabled := c.PostForm("enabled") == "true"
	verb := "Disable"
	if enabled {
		verb = "Enable"
	}
	back := integrationPath(id) + "/use-cases/" + url.PathEscape(ucID)
	o := outcome{Action: verb + " use case", Back: back}
	a := h.call(c, callerOf(c), http.MethodPut, "/v1/integrations/"+url.PathEscape(id)+"/use-cases/"+url.PathEscape(ucID),
		gin.H{"enabled": enabled, "change_description": strings.ToLower(verb) + "d in the console"})
	if !a.OK() {
		o.Problem = a.Problem()
		h.render(c, a.Status, "outcome", h.viewFor(c, o.Action, o))
		return
	}
	var uc useCase
	_ = a.decode(&uc)
	o.OK = true
	state := "disabled: its events are recorded as skipped (USE_CASE_DISABLED) until it is enabled again"
	if uc.Enabled {
		state = "enabled: its events are mapped"
	}
	o.Lines = []outcomeLine{{Text: "Use case " + firstNonEmpty(uc.Name, uc.Slug, uc.ID) + " is now " + state}}
	h.render(c, http.StatusOK, "outcome", h.viewFor(c, o.Action, o))
}

func (h *Handler) redeliver(c *gin.Context) {
	id := c.Param("integrationId")
	delivery := strings.TrimSpace(c.PostForm("delivery_id"))
	o := outcome{Action: "Redeliver", Back: safeBack(c.PostForm("back"), integrationPath(id))}
	if delivery == "" {
		o.Problem = "no delivery chosen"
		h.render(c, http.StatusBadRequest, "outcome", h.viewFor(c, o.Action, o))
		return
	}
	a := h.call(c, callerOf(c), http.MethodPost, "/v1/integrations/"+url.PathEscape(id)+"/outbound/redeliver",
		gin.H{"delivery_ids": []string{delivery}})
	if !a.OK() {
		o.Problem = a.Problem()
		h.render(c, a.Status, "outcome", h.viewFor(c, o.Action, o))
		return
	}
	var res struct {
		Redelivered int      `json:"redelivered"`
		NotFound    []string `json:"not_found"`
	}
	_ = a.decode(&res)
	o.OK = res.Redelivered > 0
	if o.OK {
		o.Lines = []outcomeLine{{Text: "Delivery " + delivery + " is queued again with a fresh schedule of attempts (same webhook-id)"}}
	} else {
		o.Problem = "delivery " + delivery + " is not among the dead letters of the last 14 days (already redelivered, or never dead-lettered)"
	}
	h.render(c, http.StatusOK, "outcome", h.viewFor(c, o.Action, o))
}

// safeBack keeps a return link inside the console.
func safeBack(back, fallback string) string {
	if strings.HasPrefix(back, Prefix+"/") && !strings.HasPrefix(back, "//") && !strings.ContainsAny(back, "\\\r\n") {
		return back
	}
	return fallback
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
