package configapi

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/erpstream/erpstream/internal/httpapi"
	"github.com/erpstream/erpstream/internal/ids"
	"github.com/erpstream/erpstream/internal/registry"
)

// Use-case history: an entry per change, newest first, paged.

func historyOf(u *registry.UseCase, change, by string, at time.Time) *registry.HistoryEntry {
	return &registry.HistoryEntry{ID: ids.NewUUID(), OrgID: u.OrgID, UseCaseID: u.ID, IntegrationID: u.IntegrationID, Type: u.Type,
		Name: u.Name, Slug: u.Slug, Enabled: u.Enabled, Configuration: u.Configuration, ChangeDescription: u.ChangeDescription,
		CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt, HistoryCreatedAt: at, ChangedBy: by, Change: change}
}

// historyPageSize is the history page length.
const historyPageSize = 20

type historyCursor struct {
	At int64  `json:"t"`
	ID string `json:"id"`
}

func (a *API) listHistory(c *gin.Context) {
	uc, ok := a.useCase(c)
	if !ok {
		return
	}
	entries := a.Registry.Snapshot().History(uc.OrgID, uc.ID)
	start := 0
	if raw := c.Query("cursor"); raw != "" {
		b, err := base64.RawURLEncoding.DecodeString(raw)
		var cur historyCursor
		if err != nil || json.Unmarshal(b, &cur) != nil || cur.ID == "" {
			httpapi.Abort(c, http.StatusBadRequest, httpapi.CodeValidation, "cursor: malformed; pass next_cursor as it was returned")
			return
		}
		start = len(entries)
		for i, h := range entries {
			t := h.HistoryCreatedAt.UnixNano()
			if t < cur.At || t == cur.At && h.ID > cur.ID {
				start = i
				break
			}
		}
	}
	end := min(start+historyPageSize, len(entries))
	page := entries[start:end]
	configs, err := a.Registry.HistoryConfigurations(c.Request.Context(), page)
	if err != nil {
		unavailable(c, err)
		return
	}
	list := make([]any, 0, len(page))
	for _, h := range page {
		shown := *h
		shown.Configuration = configs[h.ID]
		list = append(list, shown.APIView())
	}
	resp := gin.H{"history": list}
	if end < len(entries) {
		last := entries[end-1]
		b, _ := json.Marshal(historyCursor{At: last.HistoryCreatedAt.UnixNano(), ID: last.ID})
		resp["next_cursor"] = base64.RawURLEncoding.EncodeToString(b)
	}
	c.JSON(http.StatusOK, resp)
}
