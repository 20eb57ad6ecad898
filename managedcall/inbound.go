package managedcall

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/envelope"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
)

// queueInbound turns the partner's raw answer into an inbound event of the configured use case
// (its own mapping applies), with the call's correlation id, and waits for Kafka to acknowledge
// it before the call is answered.
func (s *Service) queueInbound(c *gin.Context, call *call, snap *registry.Snapshot, integ *registry.Integration, uc *registry.UseCase, body []byte) (string, bool) {
	payload := json.RawMessage(body)
	if !json.Valid(body) {
		quoted, _ := json.Marshal(string(body)) // a non-JSON answer travels as a JSON string
		payload = quoted
	}
	now := s.Now()
	ev := envelope.Event{EventID: ids.EventID(now), OrgID: integ.OrgID, IntegrationID: integ.ID, UseCaseID: uc.ID, UseCaseSlug: uc.Slug,
		EventName: uc.Slug, Timestamp: now.UTC().Format(time.RFC3339Nano), Format: "json", Payload: payload,
		CorrelationID: call.m.CorrelationID, ReceivedAtUs: now.UnixMicro(), ConfigPosition: snap.Position()}
	if err := s.Producer.ProduceSync(c.Request.Context(), envelope.EventRecord(s.Topics.Events, &ev)).FirstErr(); err != nil {
		c.Header("Retry-After", "5")
		call.fail(c, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "the partner answered, but the inbound event could not be queued; retry")
		return "", false
	}
	return ev.EventID, true
}
