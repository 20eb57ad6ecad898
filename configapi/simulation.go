package configapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/mapping"
)

// The mapping simulations run the pipeline's extraction stage (the same compiled mapping) on one
// payload and answer what would be written; nothing is stored or looked up.

const codeInvalidConfiguration = "INVALID_CONFIGURATION"

func (a *API) registerSimulation(r gin.IRouter) {
	read := httpapi.Require("erp:read")
	r.POST("/v2/erp/updates/mapping_simulation", read, a.boundSimulation, a.simulateV2)
	r.POST("/v1/erp/updates/mapping_simulation", read, a.boundSimulation, a.simulateV1)
}

type simulationV2Request struct {
	EventConfiguration json.RawMessage `json:"event_configuration"`
	Format             string          `json:"format"`
	Payload            json.RawMessage `json:"payload"`
	// EventType (erpstream's addition; optional) shows the modes an event of that type applies.
	EventType string `json:"event_type"`
}

func (a *API) simulateV2(c *gin.Context) {
	var req simulationV2Request
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if len(req.EventConfiguration) == 0 || string(req.EventConfiguration) == "null" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "event_configuration: required")
		return
	}
	format, ok := simulationFormat(c, req.Format)
	if !ok {
		return
	}
	m, err := mapping.Compile(req.EventConfiguration, a.Engine)
	if err != nil {
		a.simulationFailed(c, err)
		return
	}
	a.simulate(c, m, req.Payload, format, req.EventType)
}

type simulationV1Request struct {
	MappingConfiguration json.RawMessage `json:"mapping_configuration"`
	ObjectType           string          `json:"object_type"`
	Format               string          `json:"format"`
	Payload              json.RawMessage `json:"payload"`
	EventType            string          `json:"event_type"`
}

func (a *API) simulateV1(c *gin.Context) {
	var req simulationV1Request
	if !httpapi.BindJSON(c, &req) {
		return
	}
	if len(req.MappingConfiguration) == 0 || string(req.MappingConfiguration) == "null" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "mapping_configuration: required")
		return
	}
	if req.ObjectType == "" {
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "object_type: required")
		return
	}
	format, ok := simulationFormat(c, req.Format)
	if !ok {
		return
	}
	m, err := mapping.CompileWrapped(req.MappingConfiguration, req.ObjectType, a.Engine)
	if err != nil {
		a.simulationFailed(c, err)
		return
	}
	a.simulate(c, m, req.Payload, format, req.EventType)
}

func simulationFormat(c *gin.Context, format string) (string, bool) {
	switch format {
	case "", "json":
		return "json", true
	case "xml":
		return "xml", true
	}
	httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "format: json or xml")
	return "", false
}

func (a *API) simulate(c *gin.Context, m *mapping.Mapping, raw json.RawMessage, format, eventType string) {
	switch strings.ToUpper(eventType) {
	case "", mapping.EventCreate, mapping.EventUpdate, mapping.EventDelete:
	default:
		httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "event_type: CREATE, UPDATE or DELETE")
		return
	}
	payload, err := mapping.ParsePayload(raw, format)
	if err != nil {
		a.simulationFailed(c, err)
		return
	}
	sim, err := m.SimulateEvent(c.Request.Context(), payload, a.Now(), eventType)
	if err != nil {
		a.simulationFailed(c, err)
		return
	}
	c.JSON(http.StatusOK, sim)
}

// simulationFailed answers 422: an invalid configuration, an unparsable payload, or the mapping
// failing on this payload (with the code the pipeline would record).
func (a *API) simulationFailed(c *gin.Context, err error) {
	var ce *mapping.ConfigError
	var me *mapping.Error
	var pe *mapping.PayloadError
	switch {
	case errors.As(err, &ce):
		httpapi.Abort(c, http.StatusUnprocessableEntity, codeInvalidConfiguration, ce.Error())
	case errors.As(err, &pe):
		httpapi.Abort(c, http.StatusUnprocessableEntity, "MALFORMED_PAYLOAD", pe.Error())
	case errors.As(err, &me):
		httpapi.Abort(c, http.StatusUnprocessableEntity, me.Code, me.Error())
	default:
		httpapi.Abort(c, http.StatusUnprocessableEntity, "MAPPING_EXPRESSION_FAILED", err.Error())
	}
}
