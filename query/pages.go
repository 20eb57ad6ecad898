package query

import (
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
