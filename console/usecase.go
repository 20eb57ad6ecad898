package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/gin-gonic/gin"
)

// historyEntry is one earlier version of a use case (GET …/history).
type historyEntry struct {
	ID                string          `json:"id"`
	Name              string          `json:"name"`
	Enabled           bool            `json:"enabled"`
	Configuration     json.RawMessage `json:"configuration"`
	ChangeDescription string          `json:"change_description"`
	ChangedBy         string          `json:"changed_by"`
	HistoryCreatedAt  string          `json:"history_created_at"`
	UpdatedAt         string          `json:"updated_at"`
}

// version is a use case version the page can compare: the current one or a history entry.
type version struct {
	ID, Label, Config string
}

const currentVersion = "current"

func (h *Handler) useCasePage(c *gin.Context) {
	who := callerOf(c)
	id, ucID := c.Param("integrationId"), c.Param("useCaseId")
	integ, ok := h.integration(c, who, id)
	if !ok {
		return
	}
	path := "/v1/integrations/" + url.PathEscape(integ.ID) + "/use-cases/" + url.PathEscape(ucID)
	a := h.call(c, who, http.MethodGet, path, nil)
	if !a.OK() {
		h.failed(c, a)
		return
	}
	var uc useCase
	_ = a.decode(&uc)
	versions := []version{{ID: currentVersion, Label: "current (updated " + shortTime(uc.UpdatedAt) + ")", Config: prettyJSON(uc.Configuration)}}
	var history []historyEntry
	cursor := ""
	// Up to 200 earlier versions (four pages of the API's history).
	for range 4 {
		p := path + "/history"
		if cursor != "" {
			p += "?cursor=" + url.QueryEscape(cursor)
		}
		ha := h.call(c, who, http.MethodGet, p, nil)
		if !ha.OK() {
			break
		}
		var page struct {
			History    []historyEntry `json:"history"`
			NextCursor string         `json:"next_cursor"`
		}
		if ha.decode(&page) != nil {
			break
		}
		history = append(history, page.History...)
		if cursor = page.NextCursor; cursor == "" {
			break
		}
	}
	for _, e := range history {
		label := "before " + shortTime(e.HistoryCreatedAt)
		if e.ChangedBy != "" {
			label += " (changed by " + e.ChangedBy + ")"
		}
		versions = append(versions, version{ID: e.ID, Label: label, Config: prettyJSON(e.Configuration)})
	}
	left, right := c.DefaultQuery("from", ""), c.DefaultQuery("to", currentVersion)
	if left == "" && len(versions) > 1 {
		left = versions[1].ID
	}
	var from, to *version
	for i := range versions {
		if versions[i].ID == left {
			from = &versions[i]
		}
		if versions[i].ID == right {
			to = &versions[i]
		}
	}
	var diff []diffLine
	var diffProblem string
	if from != nil && to != nil {
		diff, diffProblem = lineDiff(from.Config, to.Config)
	}
	h.render(c, http.StatusOK, "usecase", h.viewFor(c, firstNonEmpty(uc.Name, uc.Slug, uc.ID), gin.H{
		"Integration": integ, "UseCase": uc, "Config": prettyJSON(uc.Configuration), "History": history, "Versions": versions,
		"From": left, "To": right, "Diff": diff, "DiffProblem": diffProblem, "Compared": from != nil && to != nil,
	}, crumb{"Integrations", Prefix + "/integrations"}, crumb{integ.Name, Prefix + "/integrations/" + url.PathEscape(integ.ID)}))
}

// simulatePage shows the simulation form for an inbound use case of the integration, its
// configuration prefilled (and editable: a fix is tried before it is saved).
func (h *Handler) simulatePage(c *gin.Context) {
	h.simulation(c, simulationForm{UseCaseID: c.Query("use_case_id"), Format: "json", Payload: "{\n  \n}"}, nil)
}

type simulationForm struct {
	UseCaseID, Configuration, Payload, Format, EventType string
}

// maxSimulationInput bounds the form's fields (the API's own bound is 4 MB per body).
const maxSimulationInput = 1 << 20

func (h *Handler) simulate(c *gin.Context) {
	f := simulationForm{UseCaseID: c.PostForm("use_case_id"), Configuration: c.PostForm("configuration"), Payload: c.PostForm("payload"),
		Format: c.PostForm("format"), EventType: c.PostForm("event_type")}
	if len(f.Configuration) > maxSimulationInput || len(f.Payload) > maxSimulationInput {
		h.simulation(c, f, &simulationResult{Problem: "configuration and payload: at most 1 MiB each"})
		return
	}
	if !json.Valid([]byte(f.Configuration)) {
		h.simulation(c, f, &simulationResult{Problem: "configuration: not valid JSON"})
		return
	}
	var payload any = f.Payload
	if f.Format != "xml" {
		if !json.Valid([]byte(f.Payload)) {
			h.simulation(c, f, &simulationResult{Problem: "payload: not valid JSON (choose the XML format for XML)"})
			return
		}
		payload = json.RawMessage(f.Payload)
	}
	req := gin.H{"event_configuration": json.RawMessage(f.Configuration), "format": firstNonEmpty(f.Format, "json"), "payload": payload}
	if f.EventType != "" {
		req["event_type"] = f.EventType
	}
	a := h.call(c, callerOf(c), http.MethodPost, "/v2/erp/updates/mapping_simulation", req)
	res := &simulationResult{Status: a.Status, Output: prettyJSON(a.Body)}
	if !a.OK() {
		res.Problem = a.Problem()
	}
	h.simulation(c, f, res)
}

type simulationResult struct {
	Status  int
	Output  string
	Problem string
}

func (h *Handler) simulation(c *gin.Context, f simulationForm, res *simulationResult) {
	who := callerOf(c)
	integ, ok := h.integration(c, who, c.Param("integrationId"))
	if !ok {
		return
	}
	var inbound []useCase
	for _, u := range integ.UseCases {
		if u.Type == "" || u.Type == "inbound" {
			inbound = append(inbound, u)
		}
	}
	if f.Configuration == "" {
		for _, u := range inbound {
			if f.UseCaseID == "" || u.ID == f.UseCaseID {
				f.UseCaseID, f.Configuration = u.ID, prettyJSON(u.Configuration)
				break
			}
		}
	}
	h.render(c, http.StatusOK, "simulate", h.viewFor(c, "Mapping simulation", gin.H{
		"Integration": integ, "UseCases": inbound, "Form": f, "Result": res,
	}, crumb{"Integrations", Prefix + "/integrations"}, crumb{integ.Name, Prefix + "/integrations/" + url.PathEscape(integ.ID)}))
}

// prettyJSON indents JSON for reading; anything else is returned as it is.
func prettyJSON(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}
