package logctx

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

func TestLinesOfARequestNameItsIDs(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(Handler{Next: slog.NewTextHandler(&buf, nil)}).With("component", "ingest")
	ctx := WithCorrelationID(WithRequestID(context.Background(), "req_1"), "order-7")
	log.InfoContext(ctx, "stored")
	log.Info("no request")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !strings.Contains(lines[0], "request_id=req_1") || !strings.Contains(lines[0], "correlation_id=order-7") || !strings.Contains(lines[0], "component=ingest") {
		t.Errorf("request line: %s", lines[0])
	}
	if strings.Contains(lines[1], "request_id") {
		t.Errorf("a line without a request names one: %s", lines[1])
	}
}
