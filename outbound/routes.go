package outbound

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/jsonata"
)

// AckRequestsPerMinute is how many acknowledgements one client address may send a minute.
const AckRequestsPerMinute = 600

// RegisterPublic mounts POST /v1/erp/tracking/acknowledgement without a bearer token: the ack
// id (192 random bits) is the capability. Rate-limited per client address.
func (t *AckTable) RegisterPublic(r gin.IRouter) {
	t.init()
	limit := &httpapi.RateLimiter{PerMinute: AckRequestsPerMinute, Key: func(c *gin.Context) string { return c.ClientIP() }}
	r.POST("/v1/erp/tracking/acknowledgement", limit.Middleware(), t.acknowledge)
}

func (t *AckTable) acknowledge(c *gin.Context) {
	var req struct {
		AckID string `json:"ack_id"`
	}
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if req.AckID == "" {
		httpapi.BadRequest(c, "ack_id: required")
		return
	}
	if len(req.AckID) > 200 {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "no pending acknowledgement with this ack_id")
		return
	}
	select {
	case <-t.ready:
	case <-c.Request.Context().Done():
		return
	case <-time.After(10 * time.Second):
		httpapi.Abort(c, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "acknowledgements are being restored; retry shortly")
		return
	}
	err := t.Acknowledge(c.Request.Context(), req.AckID)
	switch {
	case errors.Is(err, ErrUnknownAck):
		// Unknown, confirmed already and expired look alike: the answer reveals nothing.
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "no pending acknowledgement with this ack_id")
	case err != nil:
		httpapi.Abort(c, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "the acknowledgement could not be stored; retry")
	default:
		c.JSON(http.StatusOK, gin.H{"message": "acknowledged"})
	}
}

// Register mounts the authenticated outbound routes: trigger, outbound status, redelivery.
func (s *Service) Register(r gin.IRouter) {
	r.POST("/v1/erp/trigger", httpapi.Require("erp:write"), s.trigger)
	r.GET("/v1/integrations/:integrationId/outbound-status", httpapi.Require("erp:read"), s.status)
	r.POST("/v1/integrations/:integrationId/outbound/redeliver", httpapi.Require("erp:write"), s.redeliver)
}

type triggerRequest struct {
	ExecutionID  string `json:"execution_id"`
	OrgID        string `json:"org_id"`
	WebhookID    string `json:"webhook_id"`
	FlowID       string `json:"flow_id"`
	CreatedAt    string `json:"created_at"`
	ActionID     string `json:"action_id"`
	FlowActionID string `json:"flow_action_id"`
	FlowName     string `json:"flow_name"`
	ActivityID   string `json:"activity_id"`
	EntityID     string `json:"entity_id"`
}

// trigger fires a webhook for an entity and answers with the webhook's answer.
func (s *Service) trigger(c *gin.Context) {
	var req triggerRequest
	if !httpapi.BindJSON(c, &req) {
		return
	}
	for name, v := range map[string]string{"execution_id": req.ExecutionID, "org_id": req.OrgID, "webhook_id": req.WebhookID,
		"flow_id": req.FlowID, "created_at": req.CreatedAt, "action_id": req.ActionID, "flow_action_id": req.FlowActionID,
		"flow_name": req.FlowName, "activity_id": req.ActivityID, "entity_id": req.EntityID} {
		if v == "" {
			httpapi.BadRequest(c, "%s: required", name)
			return
		}
	}
	org := httpapi.Principal(c).OrgID
	if req.OrgID != org {
		httpapi.Abort(c, http.StatusForbidden, "FORBIDDEN", "org_id is not the org of this token")
		return
	}
	if _, err := time.Parse(time.RFC3339, req.CreatedAt); err != nil {
		httpapi.BadRequest(c, "created_at: an RFC 3339 date-time")
		return
	}
	snap := s.cfg.Registry.Snapshot()
	uc, m := s.mappingForWebhook(snap, org, req.WebhookID)
	_, hook := snap.Webhook(org, req.WebhookID)
	if m == nil && !hook {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "webhook "+req.WebhookID+" is neither defined nor used by an outbound mapping")
		return
	}
	schema, entity, found, err := s.cfg.Entities.Entity(c.Request.Context(), org, req.EntityID)
	if err != nil {
		httpapi.Abort(c, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "entities are unreadable; retry")
		return
	}
	if !found {
		httpapi.Abort(c, http.StatusNotFound, httpapi.CodeNotFound, "entity "+req.EntityID+" not found")
		return
	}
	started := s.now()
	w := envelope.EntityWrite{OrgID: org, EntitySchema: schema, EntityID: req.EntityID, Version: entity.Version, Change: "trigger",
		CorrelationID: req.ExecutionID, UniqueIdentifiers: entity.UniqueIdentifiers}
	d := &Delivery{ID: DeliveryID(org, "trigger", req.ExecutionID, req.EntityID, entity.Version, req.FlowActionID), OrgID: org,
		WebhookID: req.WebhookID, EventName: "automation_flow_target", Source: SourceTrigger, EntitySchema: schema,
		EntityID: req.EntityID, Version: entity.Version, CorrelationID: req.ExecutionID}
	doc, err := input(&change{write: w, entity: entity}, "", SourceTrigger)
	if err != nil {
		httpapi.Abort(c, http.StatusUnprocessableEntity, "ENTITY_UNREADABLE", err.Error())
		return
	}
	automation := jsonata.NewObject()
	for k, v := range map[string]string{"execution_id": req.ExecutionID, "flow_id": req.FlowID, "flow_name": req.FlowName,
		"action_id": req.ActionID, "flow_action_id": req.FlowActionID, "activity_id": req.ActivityID, "created_at": req.CreatedAt} {
		automation.Set(k, v)
	}
	doc.(*jsonata.Object).Set("automation", automation)
	if uc != nil {
		d.IntegrationID, d.UseCaseID, d.MappingID, d.MappingName = uc.uc.IntegrationID, uc.uc.ID, m.id, m.cfg.Name
		d.WebhookURL = m.cfg.Delivery.WebhookURL
		d.Payload, err = payload(c.Request.Context(), m, doc, started)
	} else {
		d.Payload, err = jsonata.MarshalValue(doc)
	}
	if err != nil {
		httpapi.Abort(c, http.StatusUnprocessableEntity, CodeMappingFailed, err.Error())
		return
	}
	sync := make(chan *outcome, 1)
	s.run(c.Request.Context(), &job{d: d, sync: sync})
	var o *outcome
	select {
	case o = <-sync:
	default:
		return // the request ended
	}
	resp := gin.H{"status_code": strconv.Itoa(o.status), "start_date": started.UTC().Format(time.RFC3339Nano),
		"end_date": s.now().UTC().Format(time.RFC3339Nano), "event_id": d.ID}
	if len(o.respBody) > 0 {
		var body map[string]any
		if json.Unmarshal(o.respBody, &body) == nil {
			resp["body"] = body
		}
	}
	if o.ok() {
		resp["status"], resp["code"], resp["message"] = "succeeded", CodeDelivered, "delivered"
	} else {
		resp["status"], resp["code"], resp["message"] = "failed", CodeFailed, o.err.Error()
	}
	c.JSON(http.StatusOK, resp)
}
