package registry

import (
	"encoding/json"
	"time"
)

// Use-case types of the ERP Integration API.
const (
	TypeInbound     = "inbound"
	TypeOutbound    = "outbound"
	TypeFileProxy   = "file_proxy"
	TypeManagedCall = "managed_call"
	TypeSecureProxy = "secure_proxy"
)

// Integration is one integration of an org. Fields holds the editable fields exactly as the
// API received them (IntegrationEditableFields), so fields this version does not interpret
// survive a round trip.
type Integration struct {
	ID     string                     `json:"id"`
	OrgID  string                     `json:"orgId"`
	Name   string                     `json:"name"`
	Fields map[string]json.RawMessage `json:"fields,omitempty"`
	// CommittedTypes are the managed calls' types of the last commit-types, by slug: what the next
	// preview compares against. Not shown in the API.
	CommittedTypes json.RawMessage `json:"committed_types,omitempty"`
	CreatedAt      time.Time       `json:"created_at"`
	UpdatedAt      time.Time       `json:"updated_at"`
}

// UseCase is one use case of an integration. Version grows by one with every change and
// identifies the configuration an event was mapped with.
type UseCase struct {
	ID                string          `json:"id"`
	OrgID             string          `json:"orgId"`
	IntegrationID     string          `json:"integrationId"`
	Name              string          `json:"name"`
	Slug              string          `json:"slug,omitempty"`
	Type              string          `json:"type"`
	Enabled           bool            `json:"enabled"`
	Configuration     json.RawMessage `json:"configuration,omitempty"`
	ChangeDescription string          `json:"change_description,omitempty"`
	// TypeAnnotations (managed_call) are developers' types for request and response fields.
	TypeAnnotations json.RawMessage `json:"type_annotations,omitempty"`
	// TypesLocked (managed_call): types were committed for this configuration; editing the
	// configuration unlocks it.
	TypesLocked bool      `json:"types_locked,omitempty"`
	Version     int64     `json:"version"`
	CreatedAt   time.Time `json:"created_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// APIView renders the integration in the API's Integration shape.
func (i *Integration) APIView() map[string]any {
	out := make(map[string]any, len(i.Fields)+5)
	for k, v := range i.Fields {
		out[k] = v
	}
	out["id"] = i.ID
	out["orgId"] = i.OrgID
	out["name"] = i.Name
	out["created_at"] = i.CreatedAt.UTC().Format(time.RFC3339Nano)
	out["updated_at"] = i.UpdatedAt.UTC().Format(time.RFC3339Nano)
	return out
}

// APIView renders the use case in the API's UseCase shape.
func (u *UseCase) APIView() map[string]any {
	out := map[string]any{
		"id":            u.ID,
		"integrationId": u.IntegrationID,
		"name":          u.Name,
		"type":          u.Type,
		"enabled":       u.Enabled,
		"created_at":    u.CreatedAt.UTC().Format(time.RFC3339Nano),
		"updated_at":    u.UpdatedAt.UTC().Format(time.RFC3339Nano),
	}
	if u.Slug != "" {
		out["slug"] = u.Slug
	}
	if len(u.Configuration) > 0 {
		out["configuration"] = u.Configuration
	}
	if u.ChangeDescription != "" {
		out["change_description"] = u.ChangeDescription
	}
	if u.Type == TypeManagedCall {
		out["types_locked"] = u.TypesLocked
		if len(u.TypeAnnotations) > 0 {
			out["type_annotations"] = u.TypeAnnotations
		}
	}
	return out
}

// APIToken is a long-lived API token. Only the SHA-256 of the token is stored.
type APIToken struct {
	ID          string    `json:"id"`
	Hash        string    `json:"hash"`
	OrgID       string    `json:"org_id"`
	Name        string    `json:"name"`
	Permissions []string  `json:"permissions"`
	CreatedAt   time.Time `json:"created_at"`
}

// EnvVar is one variable of an org's environment. Secret values are stored sealed (secrets.Box)
// and never returned by the API.
type EnvVar struct {
	OrgID       string    `json:"org_id"`
	Key         string    `json:"key"`
	Type        string    `json:"type"` // String or SecretString
	Description string    `json:"description,omitempty"`
	Value       string    `json:"value,omitempty"`  // String only
	Sealed      string    `json:"sealed,omitempty"` // SecretString only
	UpdatedAt   time.Time `json:"updated_at"`
	UpdatedBy   string    `json:"updated_by,omitempty"`
}

// Webhook is a self-hoster's definition of where outbound deliveries go: what the hosted
// product's webhook service holds, referenced by an outbound mapping's delivery.webhook_id.
// Header values, auth strings and the signing secret may name {{env.KEY}} variables; the
// signing secret must (a secret is never stored in configuration).
type Webhook struct {
	ID      string            `json:"id"`
	OrgID   string            `json:"org_id"`
	Name    string            `json:"name,omitempty"`
	URL     string            `json:"url"`
	Enabled bool              `json:"enabled"`
	Headers map[string]string `json:"headers,omitempty"`
	// Auth is connector auth (bearer, api_key, oauth2_client_credentials) as raw JSON.
	Auth          json.RawMessage `json:"auth,omitempty"`
	SigningSecret string          `json:"signing_secret,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	UpdatedAt     time.Time       `json:"updated_at"`
}

// HistoryEntry is a use case as it was before one change (UseCaseHistoryEntry).
type HistoryEntry struct {
	ID                string          `json:"id"`
	OrgID             string          `json:"org_id"`
	UseCaseID         string          `json:"useCaseId"`
	IntegrationID     string          `json:"integrationId"`
	Type              string          `json:"type"`
	Name              string          `json:"name"`
	Slug              string          `json:"slug,omitempty"`
	Enabled           bool            `json:"enabled"`
	Configuration     json.RawMessage `json:"configuration,omitempty"`
	ChangeDescription string          `json:"change_description,omitempty"`
	CreatedAt         time.Time       `json:"created_at"`
	UpdatedAt         time.Time       `json:"updated_at"`
	HistoryCreatedAt  time.Time       `json:"history_created_at"`
	ChangedBy         string          `json:"changed_by,omitempty"`
	Change            string          `json:"change"` // update or delete
	// offset is where the entry's record (with its configuration) is in the config log.
	offset int64
}

// APIView renders the entry in the API's shape.
func (h *HistoryEntry) APIView() map[string]any {
	out := map[string]any{
		"id": h.ID, "useCaseId": h.UseCaseID, "integrationId": h.IntegrationID, "type": h.Type, "name": h.Name,
		"enabled": h.Enabled, "created_at": h.CreatedAt.UTC().Format(time.RFC3339Nano),
		"updated_at": h.UpdatedAt.UTC().Format(time.RFC3339Nano), "history_created_at": h.HistoryCreatedAt.UTC().Format(time.RFC3339Nano),
	}
	if h.Slug != "" {
		out["slug"] = h.Slug
	}
	if len(h.Configuration) > 0 {
		out["configuration"] = h.Configuration
	}
	if h.ChangeDescription != "" {
		out["change_description"] = h.ChangeDescription
	}
	if h.ChangedBy != "" {
		out["changed_by"] = h.ChangedBy
	}
	return out
}
