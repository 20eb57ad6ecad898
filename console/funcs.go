package console

import (
	"encoding/json"
	"fmt"
	"html/template"
	"strings"

	"github.com/gin-gonic/gin"
)

// funcs are the templates' helpers. Everything they return is text: html/template escapes it
// for where it lands, so a payload holding markup or script shows as characters.
var funcs = template.FuncMap{
	"short":  shortTime,
	"pretty": func(raw json.RawMessage) string { return prettyJSON(raw) },
	// payload shows a JSON payload indented and an XML one (stored as a JSON string) as its text.
	"payload": func(raw json.RawMessage) string {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			if t := strings.TrimSpace(s); strings.HasPrefix(t, "{") || strings.HasPrefix(t, "[") {
				if json.Valid([]byte(t)) {
					return prettyJSON([]byte(t))
				}
			}
			return s
		}
		return prettyJSON(raw)
	},
	// rate shows the API's success_rate (a percentage of the events with an outcome).
	"rate": func(st stats) string {
		if st.SuccessRate == nil || st.Success+st.Error+st.Warning == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f %%", *st.SuccessRate)
	},
	"levels":     func() []string { return []string{"success", "error", "warning", "skipped", "pending"} },
	"lanes":      func() any { return lanes },
	"eventTypes": func() []string { return []string{"CREATE", "UPDATE", "DELETE"} },
}

// confirmFirst answers an action's first POST with a confirmation page that repeats its fields;
// only the form sent from that page (confirmed=yes) reaches the action.
func (h *Handler) confirmFirst(c *gin.Context) {
	if c.PostForm("confirmed") == "yes" {
		c.Next()
		return
	}
	_ = c.Request.ParseForm()
	what, details := describeAction(c)
	var fields []struct{ Name, Value string }
	for name, values := range c.Request.PostForm {
		if name == "confirmed" {
			continue
		}
		for _, v := range values {
			fields = append(fields, struct{ Name, Value string }{name, v})
		}
	}
	back := safeBack(c.PostForm("back"), integrationPath(c.Param("integrationId")))
	h.render(c, 200, "confirm", h.viewFor(c, "Confirm", gin.H{"What": what, "Details": details, "Fields": fields,
		"Action": c.Request.URL.Path, "Back": back}))
	c.Abort()
}

func describeAction(c *gin.Context) (string, []string) {
	in := "integration " + c.Param("integrationId")
	switch {
	case strings.HasSuffix(c.FullPath(), "/replay"):
		ids := c.Request.PostForm["event_id"]
		details := []string{"Map these events of " + in + " again with the use case's current configuration:"}
		for i, id := range ids {
			if i == 20 {
				details = append(details, fmt.Sprintf("… and %d more", len(ids)-20))
				break
			}
			details = append(details, id)
		}
		return "Replay " + plural(len(ids), "event"), details
	case strings.HasSuffix(c.FullPath(), "/replay-failed"):
		return "Replay failed events", []string{"Every inbound event of " + in + " received from " + c.PostForm("from_date") + " to " +
			c.PostForm("to_date") + " whose mapping failed is mapped again with the current configuration."}
	case strings.HasSuffix(c.FullPath(), "/enabled"):
		if c.PostForm("enabled") == "true" {
			return "Enable use case", []string{"Use case " + c.Param("useCaseId") + " maps its events again from now on."}
		}
		return "Disable use case", []string{"Events of use case " + c.Param("useCaseId") + " are recorded as skipped (USE_CASE_DISABLED), not mapped, until it is enabled again."}
	case strings.HasSuffix(c.FullPath(), "/redeliver"):
		return "Redeliver", []string{"Delivery " + c.PostForm("delivery_id") + " is taken from the dead letters and sent again with a fresh schedule of attempts."}
	}
	return "Go on", nil
}
