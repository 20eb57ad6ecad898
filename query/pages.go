package query

import (
	"encoding/json"
	"net/http"

	"github.com/gin-gonic/gin"
)

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// writePage answers a keyset page: rows holds up to limit+1 rows (the extra one only says there is
// more), each rendered with view; next_cursor is the cursor of the last row shown.
func writePage[T any](c *gin.Context, rows []T, limit int, view func(T) gin.H, cursor func(last T) any) {
	hasMore := len(rows) > limit
	if hasMore {
		rows = rows[:limit]
	}
	data := make([]gin.H, 0, len(rows))
	for _, r := range rows {
		data = append(data, view(r))
	}
	var next any
	if hasMore {
		next = cursor(rows[len(rows)-1])
	}
	c.JSON(http.StatusOK, gin.H{"data": data, "next_cursor": next, "has_more": hasMore})
}

// pageOf reads a page request's limit (default def, at most max) and cursor, answering 400
// itself when either is wrong.
func pageOf(c *gin.Context, limitIn *int, rawCursor json.RawMessage, def, max int) (int, *Cursor, bool) {
	limit, ok := limitOf(c, limitIn, def, max)
	if !ok {
		return 0, nil, false
	}
	after, err := decodeCursor(rawCursor)
	if err != nil {
		bad(c, "cursor: %v", err)
		return 0, nil, false
	}
	return limit, after, true
}
