package outbound

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/registry"
)

// mappingForWebhook finds the org's first enabled outbound mapping delivering to webhookID: the
// trigger maps with it.
func (s *Service) mappingForWebhook(snap *registry.Snapshot, org, webhookID string) (*compiledUseCase, *compiledMapping) {
	for _, uc := range snap.OutboundUseCases(org) {
		c := s.matcher.useCase(uc)
		for i := range c.mappings {
			if m := &c.mappings[i]; m.cfg.enabled() && m.cfg.Delivery.WebhookID == webhookID {
				return c, m
			}
		}
	}
	return nil, nil
}

// catalogEventKnown reports whether erpstream emits the event: "<schema>.created", ".updated"
// or ".deleted", with the schema among the integration's declared entity_schemas when it
// declares any. erpstream's event catalog is derived from entity writes, so an event is
// "enabled" exactly when it can occur.
func catalogEventKnown(integ *registry.Integration, event string) bool {
	schema, op, ok := strings.Cut(event, ".")
	if !ok || schema == "" || (op != "created" && op != "updated" && op != "deleted") {
		return false
	}
	declared := declaredSchemas(integ)
	if len(declared) == 0 {
		return true
	}
	for _, d := range declared {
		if d == schema {
			return true
		}
	}
	return false
}

// status answers GET /v1/integrations/{id}/outbound-status (OutboundStatusResponse).
func (s *Service) status(c *gin.Context) {
	snap := s.cfg.Registry.Snapshot()
	integ, ok := httpapi.OrgIntegration(c, snap, c.Param("integrationId"))
	if !ok {
		return
	}
	out := []gin.H{}
	for _, uc := range snap.UseCases(integ.OrgID, integ.ID) {
		if uc.Type != registry.TypeOutbound {
			continue
		}
		cu := s.matcher.useCase(uc)
		event := cu.cfg.EventCatalogEvent
		eventEnabled := catalogEventKnown(integ, event)
		conflicts := []gin.H{}
		webhooks := []gin.H{}
		anyEnabled := false
		seen := map[string]bool{}
		for i := range cu.mappings {
			m := &cu.mappings[i]
			id := m.cfg.Delivery.WebhookID
			if seen[id] {
				continue
			}
			seen[id] = true
			wh := gin.H{"webhookId": id}
			enabled := m.cfg.enabled()
			if def, found := snap.Webhook(integ.OrgID, id); found {
				wh["webhookName"] = def.Name
				enabled = enabled && def.Enabled
			} else if m.cfg.Delivery.WebhookURL == "" {
				enabled = false // nowhere to deliver
			}
			if name := m.cfg.Delivery.WebhookName; name != "" && wh["webhookName"] == nil {
				wh["webhookName"] = name
			}
			wh["enabled"] = enabled
			anyEnabled = anyEnabled || enabled
			webhooks = append(webhooks, wh)
			if !uc.Enabled && enabled {
				conflicts = append(conflicts, gin.H{"type": "webhook_enabled_while_disabled", "webhookId": id,
					"message": "webhook " + id + " is enabled while the use case is disabled"})
			}
		}
		status := "ok"
		switch {
		case !uc.Enabled:
			status = "disabled"
		default:
			if !eventEnabled {
				conflicts = append(conflicts, gin.H{"type": "event_disabled",
					"message": "erpstream emits no event " + event + ": events are <entity_schema>.created, .updated or .deleted of a schema the integration writes"})
			}
			if !anyEnabled {
				conflicts = append(conflicts, gin.H{"type": "all_webhooks_disabled", "message": "every webhook of this use case is disabled or undefined"})
			}
			if len(conflicts) > 0 {
				status = "conflict"
			}
		}
		out = append(out, gin.H{"useCaseId": uc.ID, "name": uc.Name, "useCaseEnabled": uc.Enabled, "eventCatalogEvent": event,
			"eventEnabled": eventEnabled, "webhooks": webhooks, "status": status, "conflicts": conflicts})
	}
	c.JSON(http.StatusOK, gin.H{"useCases": out})
}

// declaredSchemas reads the integration's settings.entity_schemas.
func declaredSchemas(integ *registry.Integration) []string {
	var settings struct {
		EntitySchemas []string `json:"entity_schemas"`
	}
	if raw, ok := integ.Fields["settings"]; ok {
		_ = json.Unmarshal(raw, &settings)
	}
	return settings.EntitySchemas
}
